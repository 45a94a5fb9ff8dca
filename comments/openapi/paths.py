"""The operations of every route of the API by path, with their operation ids and the links between them."""

from __future__ import annotations

from typing import Any

from .components import (
    COMMON_ERRORS,
    ID,
    STATUS,
    TIME,
    Schema,
    answer,
    error_refs,
    header,
    object_schema,
    ref,
    text,
)


def _query(name: str, schema: Schema, required: bool = False, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    return param | ({"description": description} if description else {})


PAGE_QUERY: Schema = _query("page", text(1024), required=True)
LIMIT: Schema = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR: Schema = _query("cursor", {"type": "string"}, description="the `next` of the previous answer")
COMMENT_ID: Schema = {"name": "comment_id", "in": "path", "required": True, "schema": ID}
EDIT_TOKEN: Schema = {"name": "X-Edit-Token", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": "the edit_token the comment was created with"}
ADMIN: list[dict[str, list[str]]] = [{"moderator": []}]
JSON_OR_FORM: list[str] = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]
NO_CONTENT: dict[str, Schema] = {"204": {"description": "done"}}


def _body(schema: Schema, types: list[str] | None = None) -> Schema:
    return {"required": True, "content": {t: {"schema": schema} for t in types or ["application/json"]}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses, **extra}


def _admin(summary: str, responses: dict[str, Any], *codes: str, body: bool = False, **extra: Any) -> Schema:
    return _op(summary, responses | error_refs("unauthorized", *codes, body=body), security=ADMIN, **extra)


def _asset(media_type: str) -> Schema:
    return _op(f"a static file ({media_type})", {
        "200": {"description": "the file (gzipped when accepted)",
                "content": {media_type: {"schema": {"type": "string"}}},
                "headers": {"ETag": header("validator for If-None-Match")}},
        "304": {"description": "the client's copy is current"},
    })


PATHS: dict[str, Schema] = {
    "/api/comments": {
        "get": _op("the approved comments of a page, replies nested", {
            "200": answer("the thread", ref("Thread"), {"ETag": header("changes whenever the thread does")}),
            "304": {"description": "If-None-Match matched", "headers": {"ETag": header("the thread's ETag")}},
        } | error_refs("validation_error"), parameters=[PAGE_QUERY, LIMIT, CURSOR, {
            "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}]),
        "post": _op("leave a reply", {
            "201": answer("published at once", ref("NewComment")),
            "202": answer("waiting for moderation", ref("NewComment")),
            "303": {"description": "a form post preferring HTML goes back to the article",
                    "headers": {"Location": header("the article, with #comment-ID")}},
        } | error_refs("closed", "duplicate", "validation_error", "rate_limited", body=True),
            requestBody=_body(ref("CommentIn"), JSON_OR_FORM)),
    },
    "/api/comments/{comment_id}": {
        "parameters": [COMMENT_ID, EDIT_TOKEN],
        "get": _op("one approved comment (or, with its edit token, the author's own)", {
            "200": answer("the comment", {"anyOf": [ref("Comment"), ref("AuthorComment")]}),
        } | error_refs("forbidden", "not_found")),
        "patch": _op("the author changes the body within the edit window", {
            "200": answer("the comment as changed", ref("AuthorComment")),
        } | error_refs("forbidden", "not_found", "validation_error", body=True),
            requestBody=_body(ref("BodyEdit"), JSON_OR_FORM)),
        "delete": _op("the author deletes the comment within the edit window",
                      NO_CONTENT | error_refs("forbidden", "not_found")),
    },
    "/api/counts": {
        "get": _op("approved comments per page", {
            "200": answer("page to count", {"type": "object", "additionalProperties": {"type": "integer"}}),
        } | error_refs("validation_error"), parameters=[
            _query("page", {"type": "array", "maxItems": 200, "items": text(1024)}) | {"explode": True}]),
    },
    "/healthz": {
        "get": _op("whether the database answers",
                   {"200": answer("it does", object_schema({"status": {"const": "ok"}}))} | COMMON_ERRORS),
    },
    "/openapi.json": {
        "get": _op("this document", {"200": answer("OpenAPI 3.1", {"type": "object"})}),
    },
    "/api/admin/comments": {
        "get": _admin("a moderation list: pending oldest first, the others newest first", {
            "200": answer("one page of the list, with counts per status", ref("CommentList")),
        }, "validation_error", parameters=[
            _query("status", STATUS), _query("page", text(1024)),
            _query("q", {"type": "string", "maxLength": 200}, description="words in body or author, or an address"),
            LIMIT, CURSOR]),
    },
    "/api/admin/comments/bulk": {
        "post": _admin("one status for many comments", {"200": answer("what changed", ref("BulkResult"))},
                       "validation_error", body=True, requestBody=_body(ref("Bulk"))),
    },
    "/api/admin/comments/{comment_id}": {
        "parameters": [COMMENT_ID],
        "get": _admin("one comment, full view", {"200": answer("the comment", ref("FullComment"))}, "not_found"),
        "patch": _admin("change status, body, author or url", {"200": answer("the comment", ref("FullComment"))},
                        "not_found", "validation_error", body=True, requestBody=_body(ref("CommentChange"))),
        "delete": _admin("delete for good; replies move up to its parent", NO_CONTENT, "not_found"),
    },
    "/api/admin/rules": {
        "get": _admin("the moderation rules", {"200": answer("the rules", ref("Rules"))}),
        "put": _admin("replace the moderation rules", {"200": answer("the rules", ref("Rules"))},
                      "validation_error", body=True, requestBody=_body(ref("RulesIn"))),
    },
    "/api/admin/pages": {
        "get": _admin("pages in the order they first got a comment", {"200": answer("pages", ref("PageList"))},
                      "validation_error", parameters=[LIMIT, CURSOR]),
        "patch": _admin("close a page to new comments, or open it", {"200": answer("the page", ref("PageState"))},
                        "validation_error", body=True, parameters=[PAGE_QUERY],
                        requestBody=_body(object_schema({"closed": {"type": "boolean"}}, closed=False))),
    },
    "/api/form-token": {
        "get": _op("a signed token for the comment form of a page (spam defence)", {
            "200": answer("the token", ref("FormToken"))} | error_refs("validation_error"), parameters=[PAGE_QUERY]),
    },
    "/api/admin/people": {
        "parameters": [_query("email", text(254), required=True)],
        "get": _admin("everything stored about one address (the export is recorded)", {
            "200": answer("the address's comments, full", ref("PersonExport"))}, "validation_error"),
        "delete": _admin("anonymise every comment by one address", {"200": answer("how many", ref("Erased"))},
                         "validation_error",
                         parameters=[_query("body", {"type": "string", "enum": ["keep", "replace"]})]),
    },
    "/api/admin/audit": {
        "get": _admin("the record of moderators' actions, newest first", {
            "200": answer("one page of it", ref("AuditList"))}, "validation_error", parameters=[
            _query("actor", {"type": "string", "maxLength": 100}),
            _query("action", {"type": "string", "maxLength": 100}),
            _query("comment", ID), _query("since", TIME), _query("until", TIME), LIMIT, CURSOR]),
    },
    "/api/admin/outbox": {
        "get": _admin("notifications and webhook deliveries, newest first", {
            "200": answer("one page of them, with counts per status", ref("OutboxList"))}, "validation_error",
            parameters=[_query("status", {"type": "string"}), LIMIT, CURSOR]),
    },
    "/api/admin/outbox/{event_id}/retry": {
        "post": _admin("try a failed delivery again", {"200": answer("the delivery", ref("OutboxItem"))},
                       "not_found",
                       parameters=[{"name": "event_id", "in": "path", "required": True, "schema": ID}]),
    },
    "/api/admin/webhooks": {
        "get": _admin("the webhooks and the events they can ask for",
                      {"200": answer("webhooks", ref("WebhookList"))}),
        "post": _admin("add a webhook", {"201": answer("the webhook, with its secret", ref("Webhook"))},
                       "validation_error", "duplicate", body=True, requestBody=_body(ref("WebhookIn"))),
    },
    "/api/admin/webhooks/{webhook_id}": {
        "delete": _admin("remove a webhook", NO_CONTENT, "not_found",
                         parameters=[{"name": "webhook_id", "in": "path", "required": True, "schema": ID}]),
    },
    "/embed.js": {"get": _asset("text/javascript")},
    "/embed.css": {"get": _asset("text/css")},
    "/demo.css": {"get": _asset("text/css")},
    "/embed/form": {
        "get": _op("the no-JavaScript form as an HTML fragment", {
            "200": {"description": "the form", "content": {"text/html": {"schema": {"type": "string"}}}},
            "422": {"$ref": "#/components/responses/validation_error"},
        }, parameters=[PAGE_QUERY, _query("redirect", {"type": "string"}), _query("parent", {"type": "string"})]),
    },
    "/demo": {
        "get": _op("a sample article with the embed (COMMENTS_DEMO only)", {
            "200": {"description": "the article", "content": {"text/html": {"schema": {"type": "string"}}}},
        }),
    },
}


def operation_id(method: str, path: str) -> str:
    """get /api/comments/{comment_id} -> get_api_comments_comment_id"""
    return "_".join([method, *(part.strip("{}").replace(".", "_") for part in path.split("/") if part)])


# What a new comment's answer leads to: its author's and its moderators' operations on it.
_BY_ID: dict[str, str] = {"comment_id": "$response.body#/id"}
LINKS: dict[str, tuple[str, str, bool]] = {
    "AuthorView": ("get", "/api/comments/{comment_id}", True),
    "AuthorEdit": ("patch", "/api/comments/{comment_id}", True),
    "AuthorDelete": ("delete", "/api/comments/{comment_id}", True),
    "ModeratorView": ("get", "/api/admin/comments/{comment_id}", False),
    "ModeratorChange": ("patch", "/api/admin/comments/{comment_id}", False),
    "ModeratorDelete": ("delete", "/api/admin/comments/{comment_id}", False),
}


def with_ids(paths: dict[str, Schema]) -> dict[str, Schema]:
    """These path items with an operationId on every operation, and links on a new comment's answers."""
    result: dict[str, Schema] = {}
    for path, item in paths.items():
        result[path] = {method: ({**op, "operationId": operation_id(method, path)} if method != "parameters" else op)
                        for method, op in item.items()}
    created = result.get("/api/comments", {}).get("post")
    if created:
        token = {"header.X-Edit-Token": "$response.body#/edit_token"}
        links = {name: {"operationId": operation_id(method, path), "parameters": _BY_ID | (token if own else {})}
                 for name, (method, path, own) in LINKS.items() if path in result}
        responses = created["responses"] = dict(created["responses"])  # a copy: PATHS stays as declared
        for status in ("201", "202"):
            responses[status] = {**responses[status], "links": links}
    return result
