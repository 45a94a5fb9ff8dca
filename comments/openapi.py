"""The HTTP contract as an OpenAPI 3.1 document, served at /openapi.json for the routes this app has."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import STATUS_CODES
from .http import json_response, route
from .models import Rules

Schema = dict[str, Any]
MAX_ID = 2**63 - 1


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: Schema | None = None, headers: dict[str, Any] | None = None) -> Schema:
    answer: Schema = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str, required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": {"type": "string"}}


RETRY_AFTER = {"Retry-After": _header("seconds to wait before trying again")}

# The answers every operation may give: a request the HTTP server cannot parse (in plain text,
# before the application sees it), the database not answering, or a fault on our side.
COMMON_ERRORS = {
    "400": {"$ref": "#/components/responses/bad_request"},
    "500": {"$ref": "#/components/responses/internal_error"},
    "503": {"$ref": "#/components/responses/unavailable"},
}
ERROR_ANSWERS: dict[str, Schema] = {
    "bad_request": {"description": "the body, a cursor or a header cannot be parsed (JSON), or the HTTP "
                                   "server refused a malformed or oversized request (plain text)",
                    "content": _json(_ref("Error")) | {"text/plain": {"schema": {"type": "string"}}}},
    "unauthorized": _answer("no valid moderator token", _ref("Error"),
                            {"WWW-Authenticate": _header("Bearer")}),
    "forbidden": _answer("a wrong or expired edit token", _ref("Error")),
    "closed": _answer("the page is closed for comments (code `closed`)", _ref("Error")),
    "not_found": _answer("no such comment (or not public)", _ref("Error")),
    "duplicate": _answer("the same address already left the same text on this page", _ref("Error")),
    "payload_too_large": _answer("the request body is over COMMENTS_MAX_REQUEST_BYTES", _ref("Error")),
    "unsupported_media_type": _answer("a content type the endpoint does not read", _ref("Error")),
    "validation_error": _answer("a field breaks its rule; `fields` names every one", _ref("Error")),
    "rate_limited": _answer("over the rate limit or the flood interval", _ref("Error"), RETRY_AFTER),
    "internal_error": _answer("a fault on our side (never with a traceback)", _ref("Error")),
    "unavailable": _answer("the database does not answer", _ref("Error"), RETRY_AFTER),
}


def _errors(*codes: str, body: bool = False) -> dict[str, Any]:
    """The error answers of an operation by contract code (a body adds 413 and 415), and the common ones."""
    wanted = list(codes) + (["payload_too_large", "unsupported_media_type"] if body else [])
    status_of = {code: status for status, code in STATUS_CODES.items()} | {"closed": 403}
    return {str(status_of[c]): {"$ref": f"#/components/responses/{c}"} for c in wanted} | COMMON_ERRORS


def _text(max_length: int, description: str = "") -> Schema:
    schema: Schema = {"type": "string", "minLength": 1, "maxLength": max_length}
    return schema | ({"description": description} if description else {})


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NULLABLE_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ID}
TIME = {"type": "string", "format": "date-time"}
STATUS = {"type": "string", "enum": ["pending", "approved", "spam", "trash"]}
WORDS = {"type": "array", "maxItems": 1000, "items": _text(100)}

PUBLIC_FIELDS: Schema = {
    "id": ID,
    "parent": NULLABLE_ID,
    "author": {"type": "string"},
    "url": {"type": ["string", "null"]},
    "body_html": {"type": "string"},
    "created_at": TIME,
}


def _rules() -> Schema:
    """The rules as forms.rules_in checks them, field by field from the Rules model."""
    defaults = Rules()
    schema: Schema = {}
    for name in Rules.model_fields:
        default = getattr(defaults, name)
        if isinstance(default, bool):
            schema[name] = {"type": "boolean"}
        elif isinstance(default, float):
            schema[name] = {"type": "number", "minimum": 0, "maximum": 1}
        elif isinstance(default, int):
            schema[name] = {"type": "integer", "minimum": 0, "maximum": 10**7}
        elif isinstance(default, list):
            schema[name] = WORDS
        else:
            schema[name] = {"type": "string", "enum": ["all", "rules"]}
    schema["edit_window_seconds"] = {"type": "integer", "minimum": 0, "maximum": 7 * 86400}
    return schema


RULES = _rules()


def _object(properties: Schema, required: list[str] | None = None, closed: bool = True) -> Schema:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": not closed}


# The contract's own shapes are closed (a public view has exactly its fields); the newer moderators'
# endpoints (people, audit, outbox, webhooks) name what they promise and leave room to grow.
SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({
        "code": {"type": "string", "enum": [*STATUS_CODES.values(), "closed"]},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    }, required=["code", "message"])}),
    "Comment": _object(PUBLIC_FIELDS),
    "ThreadComment": _object(PUBLIC_FIELDS | {"replies": {"type": "array", "items": _ref("ThreadComment")}}),
    "Thread": _object({
        "page": {"type": "string"}, "total": {"type": "integer", "minimum": 0},
        "comments": {"type": "array", "items": _ref("ThreadComment")},
        "next": {"type": ["string", "null"], "description": "pass back as `cursor` for the next page"},
        "closed": {"type": "boolean", "description": "the page takes no new comments"},
    }, required=["page", "total", "comments", "next"]),
    "AuthorComment": _object(PUBLIC_FIELDS | {"status": {"type": "string", "enum": ["pending", "approved"]},
                                              "body": {"type": "string", "description": "as its author wrote it"}},
                             required=[*PUBLIC_FIELDS, "status"]),
    "NewComment": _object(PUBLIC_FIELDS | {
        "status": {"type": "string", "enum": ["pending", "approved"]},
        "edit_token": {"type": "string", "description": "send as X-Edit-Token to see, edit or delete it"},
    }),
    "CommentIn": {
        "type": "object",
        "description": "Text fields are trimmed before they are checked; other fields are ignored. "
                       "WordPress's names work too: comment (body), comment_post_ID (page), "
                       "comment_parent (parent); a form may add redirect_to.",
        "properties": {
            "page": _text(1024),
            "body": _text(1_000_000, "1 to COMMENTS_MAX_BODY_CHARS characters"),
            "author": _text(245),
            "email": _text(254, "a valid address; never published") | {"format": "email"},
            "url": {"type": ["string", "null"], "maxLength": 200, "description": "http(s) only"},
            "parent": {"type": ["integer", "string", "null"], "description": "0 or empty means none"},
            "comment": _text(1_000_000), "comment_post_ID": _text(1024),
            "comment_parent": {"type": ["integer", "string", "null"]},
            "redirect_to": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["page"]}, {"required": ["comment_post_ID"]}]},
                  {"anyOf": [{"required": ["body"]}, {"required": ["comment"]}]},
                  {"required": ["author", "email"]}],
    },
    "BodyEdit": {"type": "object", "required": ["body"], "properties": {"body": _text(1_000_000)},
                 "not": {"required": ["status"]}},
    "Counts": _object({s: {"type": "integer", "minimum": 0} for s in STATUS["enum"]}),
    "FullComment": _object(PUBLIC_FIELDS | {
        "page": {"type": "string"}, "status": STATUS, "email": {"type": "string"},
        "ip": {"type": ["string", "null"]}, "user_agent": {"type": ["string", "null"]},
        "spam_score": {"type": "number", "minimum": 0, "maximum": 1},
        "spam_reasons": {"type": "array", "items": {"type": "string"}}, "updated_at": TIME,
    }, closed=False),
    "CommentList": _object({
        "items": {"type": "array", "items": _ref("FullComment")},
        "next": {"type": ["string", "null"]}, "counts": _ref("Counts"),
    }),
    "CommentChange": {"type": "object", "properties": {
        "status": {"type": ["string", "null"], "enum": [*STATUS["enum"], None], "description": "null leaves it"},
        "body": _text(1_000_000), "author": _text(245),
        "url": {"type": ["string", "null"], "maxLength": 200, "description": "null or \"\" removes it"},
    }},
    "Bulk": {"type": "object", "required": ["ids", "status"], "properties": {
        "ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": ID}, "status": STATUS}},
    "BulkResult": _object({"updated": {"type": "array", "items": ID}, "missing": {"type": "array", "items": ID}}),
    "Rules": _object(RULES),
    "RulesIn": {"type": "object", "required": list(RULES), "properties": RULES,
                "description": "every rule, always: PUT replaces the whole set"},
    "FormToken": _object({"token": {"type": "string"}, "page": {"type": "string"}}),
    "PersonExport": _object({"email": {"type": "string"}, "comments": {"type": "array", "items": {
        "type": "object", "required": ["id", "page", "status", "author", "email", "body", "created_at"]}}},
        required=["email", "comments"], closed=False),
    "Erased": _object({"erased": {"type": "integer", "minimum": 0}}),
    "AuditList": _object({"items": {"type": "array", "items": {
        "type": "object", "required": ["id", "created_at", "actor", "action", "comment_id", "from", "to"]}},
        "next": {"type": ["string", "null"]}}, closed=False),
    "OutboxItem": {"type": "object", "required": ["id", "kind", "status", "attempts", "created_at"]},
    "OutboxList": _object({"items": {"type": "array", "items": _ref("OutboxItem")},
                           "next": {"type": ["string", "null"]},
                           "counts": {"type": "object", "additionalProperties": {"type": "integer"}}}, closed=False),
    "Webhook": {"type": "object", "required": ["id", "url", "events", "created_at"],
                "properties": {"id": ID, "url": {"type": "string"},
                               "events": {"type": "array", "items": {"type": "string"}},
                               "secret": {"type": "string", "description": "shown once, when it is made"}}},
    "WebhookList": _object({"items": {"type": "array", "items": _ref("Webhook")},
                            "events": {"type": "array", "items": {"type": "string"}}}, closed=False),
    "WebhookIn": {"type": "object", "required": ["url", "events"], "properties": {
        "url": {"type": "string", "description": "https, or http to an allowed network"},
        "events": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "secret": {"type": "string", "minLength": 16, "maxLength": 200, "description": "made for you if left out"}}},
    "PageState": _object({"page": {"type": "string"}, "closed": {"type": "boolean"}, "counts": _ref("Counts")}),
    "PageList": _object({"items": {"type": "array", "items": _ref("PageState")},
                         "next": {"type": ["string", "null"]}}),
}


def _query(name: str, schema: Schema, required: bool = False, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    return param | ({"description": description} if description else {})


PAGE_QUERY = _query("page", _text(1024), required=True)
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR = _query("cursor", {"type": "string"}, description="the `next` of the previous answer")
COMMENT_ID = {"name": "comment_id", "in": "path", "required": True, "schema": ID}
EDIT_TOKEN = {"name": "X-Edit-Token", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "the edit_token the comment was created with"}
ADMIN = [{"moderator": []}]
JSON_OR_FORM = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]
NO_CONTENT = {"204": {"description": "done"}}


def _body(schema: Schema, types: list[str] | None = None) -> Schema:
    return {"required": True, "content": {t: {"schema": schema} for t in types or ["application/json"]}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses, **extra}


def _admin(summary: str, responses: dict[str, Any], *codes: str, body: bool = False, **extra: Any) -> Schema:
    return _op(summary, responses | _errors("unauthorized", *codes, body=body), security=ADMIN, **extra)


def _asset(media_type: str) -> Schema:
    return _op(f"a static file ({media_type})", {
        "200": {"description": "the file (gzipped when accepted)",
                "content": {media_type: {"schema": {"type": "string"}}},
                "headers": {"ETag": _header("validator for If-None-Match")}},
        "304": {"description": "the client's copy is current"},
    })


PATHS: dict[str, Schema] = {
    "/api/comments": {
        "get": _op("the approved comments of a page, replies nested", {
            "200": _answer("the thread", _ref("Thread"), {"ETag": _header("changes whenever the thread does")}),
            "304": {"description": "If-None-Match matched", "headers": {"ETag": _header("the thread's ETag")}},
        } | _errors("validation_error"), parameters=[PAGE_QUERY, LIMIT, CURSOR, {
            "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}]),
        "post": _op("leave a reply", {
            "201": _answer("published at once", _ref("NewComment")),
            "202": _answer("waiting for moderation", _ref("NewComment")),
            "303": {"description": "a form post preferring HTML goes back to the article",
                    "headers": {"Location": _header("the article, with #comment-ID")}},
        } | _errors("closed", "duplicate", "validation_error", "rate_limited", body=True),
            requestBody=_body(_ref("CommentIn"), JSON_OR_FORM)),
    },
    "/api/comments/{comment_id}": {
        "parameters": [COMMENT_ID, EDIT_TOKEN],
        "get": _op("one approved comment (or, with its edit token, the author's own)", {
            "200": _answer("the comment", {"anyOf": [_ref("Comment"), _ref("AuthorComment")]}),
        } | _errors("forbidden", "not_found")),
        "patch": _op("the author changes the body within the edit window", {
            "200": _answer("the comment as changed", _ref("AuthorComment")),
        } | _errors("forbidden", "not_found", "validation_error", body=True),
            requestBody=_body(_ref("BodyEdit"), JSON_OR_FORM)),
        "delete": _op("the author deletes the comment within the edit window",
                      NO_CONTENT | _errors("forbidden", "not_found")),
    },
    "/api/counts": {
        "get": _op("approved comments per page", {
            "200": _answer("page to count", {"type": "object", "additionalProperties": {"type": "integer"}}),
        } | _errors("validation_error"), parameters=[
            _query("page", {"type": "array", "maxItems": 200, "items": _text(1024)}) | {"explode": True}]),
    },
    "/healthz": {
        "get": _op("whether the database answers", {"200": _answer("it does", _object({"status": {"const": "ok"}}))}
                   | COMMON_ERRORS),
    },
    "/openapi.json": {
        "get": _op("this document", {"200": _answer("OpenAPI 3.1", {"type": "object"})}),
    },
    "/api/admin/comments": {
        "get": _admin("a moderation list: pending oldest first, the others newest first", {
            "200": _answer("one page of the list, with counts per status", _ref("CommentList")),
        }, "validation_error", parameters=[
            _query("status", STATUS), _query("page", _text(1024)),
            _query("q", {"type": "string", "maxLength": 200}, description="words in body or author, or an address"),
            LIMIT, CURSOR]),
    },
    "/api/admin/comments/bulk": {
        "post": _admin("one status for many comments", {"200": _answer("what changed", _ref("BulkResult"))},
                       "validation_error", body=True, requestBody=_body(_ref("Bulk"))),
    },
    "/api/admin/comments/{comment_id}": {
        "parameters": [COMMENT_ID],
        "get": _admin("one comment, full view", {"200": _answer("the comment", _ref("FullComment"))}, "not_found"),
        "patch": _admin("change status, body, author or url", {"200": _answer("the comment", _ref("FullComment"))},
                        "not_found", "validation_error", body=True, requestBody=_body(_ref("CommentChange"))),
        "delete": _admin("delete for good; replies move up to its parent", NO_CONTENT, "not_found"),
    },
    "/api/admin/rules": {
        "get": _admin("the moderation rules", {"200": _answer("the rules", _ref("Rules"))}),
        "put": _admin("replace the moderation rules", {"200": _answer("the rules", _ref("Rules"))},
                      "validation_error", body=True, requestBody=_body(_ref("RulesIn"))),
    },
    "/api/admin/pages": {
        "get": _admin("pages in the order they first got a comment", {"200": _answer("pages", _ref("PageList"))},
                      "validation_error", parameters=[LIMIT, CURSOR]),
        "patch": _admin("close a page to new comments, or open it", {"200": _answer("the page", _ref("PageState"))},
                        "validation_error", body=True, parameters=[PAGE_QUERY],
                        requestBody=_body(_object({"closed": {"type": "boolean"}}, closed=False))),
    },
    "/api/form-token": {
        "get": _op("a signed token for the comment form of a page (spam defence)", {
            "200": _answer("the token", _ref("FormToken"))} | _errors("validation_error"), parameters=[PAGE_QUERY]),
    },
    "/api/admin/people": {
        "parameters": [_query("email", _text(254), required=True)],
        "get": _admin("everything stored about one address (the export is recorded)", {
            "200": _answer("the address's comments, full", _ref("PersonExport"))}, "validation_error"),
        "delete": _admin("anonymise every comment by one address", {"200": _answer("how many", _ref("Erased"))},
                         "validation_error",
                         parameters=[_query("body", {"type": "string", "enum": ["keep", "replace"]})]),
    },
    "/api/admin/audit": {
        "get": _admin("the record of moderators' actions, newest first", {
            "200": _answer("one page of it", _ref("AuditList"))}, "validation_error", parameters=[
            _query("actor", {"type": "string", "maxLength": 100}),
            _query("action", {"type": "string", "maxLength": 100}),
            _query("comment", ID), _query("since", TIME), _query("until", TIME), LIMIT, CURSOR]),
    },
    "/api/admin/outbox": {
        "get": _admin("notifications and webhook deliveries, newest first", {
            "200": _answer("one page of them, with counts per status", _ref("OutboxList"))}, "validation_error",
            parameters=[_query("status", {"type": "string"}), LIMIT, CURSOR]),
    },
    "/api/admin/outbox/{event_id}/retry": {
        "post": _admin("try a failed delivery again", {"200": _answer("the delivery", _ref("OutboxItem"))},
                       "not_found",
                       parameters=[{"name": "event_id", "in": "path", "required": True, "schema": ID}]),
    },
    "/api/admin/webhooks": {
        "get": _admin("the webhooks and the events they can ask for",
                      {"200": _answer("webhooks", _ref("WebhookList"))}),
        "post": _admin("add a webhook", {"201": _answer("the webhook, with its secret", _ref("Webhook"))},
                       "validation_error", "duplicate", body=True, requestBody=_body(_ref("WebhookIn"))),
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
_BY_ID = {"comment_id": "$response.body#/id"}
LINKS = {
    "AuthorView": ("get", "/api/comments/{comment_id}", True),
    "AuthorEdit": ("patch", "/api/comments/{comment_id}", True),
    "AuthorDelete": ("delete", "/api/comments/{comment_id}", True),
    "ModeratorView": ("get", "/api/admin/comments/{comment_id}", False),
    "ModeratorChange": ("patch", "/api/admin/comments/{comment_id}", False),
    "ModeratorDelete": ("delete", "/api/admin/comments/{comment_id}", False),
}


def _with_ids(paths: dict[str, Schema]) -> dict[str, Schema]:
    result: dict[str, Schema] = {}
    for path, item in paths.items():
        result[path] = {method: ({**op, "operationId": operation_id(method, path)} if method != "parameters" else op)
                        for method, op in item.items()}
    created = result.get("/api/comments", {}).get("post")
    if created:
        token = {"header.X-Edit-Token": "$response.body#/edit_token"}
        links = {name: {"operationId": operation_id(method, path), "parameters": _BY_ID | (token if own else {})}
                 for name, (method, path, own) in LINKS.items() if path in result}
        for status in ("201", "202"):
            created["responses"][status] = {**created["responses"][status], "links": links}
    return result


def document(paths: set[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document; with paths, only the operations of those routes."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "comments", "version": "1",
                 "description": "Leave a Reply form, public threads and the moderation API. "
                                "A HEAD request works wherever a GET does."},
        "paths": _with_ids({path: item for path, item in PATHS.items() if paths is None or path in paths}),
        "components": {
            "schemas": SCHEMAS,
            "responses": ERROR_ANSWERS,
            "securitySchemes": {"moderator": {"type": "http", "scheme": "bearer",
                                              "description": "a token made with `comments token create NAME`"}},
        },
    }


async def serve(request: Request) -> Response:
    mounted = {getattr(r, "path_format", "") for r in request.app.routes}
    return json_response(document(mounted), headers={"Cache-Control": "no-cache"})


def routes() -> list[Route]:
    return [route("/openapi.json", GET=serve)]
