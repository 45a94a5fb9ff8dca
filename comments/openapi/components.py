"""The reusable parts of the OpenAPI document: ids, times, statuses, the rules, error answers and named schemas."""

from __future__ import annotations

from typing import Any

from ..errors import STATUS_CODES
from ..models import Rules

Schema = dict[str, Any]
"""A piece of an OpenAPI document, as JSON."""
MAX_ID = 2**63 - 1


def ref(name: str) -> Schema:
    """A reference to one of the named schemas below."""
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: Schema | None = None, headers: dict[str, Any] | None = None) -> Schema:
    """A response object: its description, a JSON body if it has one, and its headers."""
    result: Schema = {"description": description}
    if schema is not None:
        result["content"] = _json(schema)
    if headers:
        result["headers"] = headers
    return result


def header(description: str, required: bool = True) -> Schema:
    """A string header of a response."""
    return {"description": description, "required": required, "schema": {"type": "string"}}


RETRY_AFTER: Schema = {"Retry-After": header("seconds to wait before trying again")}

# The answers every operation may give: a request the HTTP server cannot parse (in plain text,
# before the application sees it), the database not answering, or a fault on our side.
COMMON_ERRORS: dict[str, Schema] = {
    "400": {"$ref": "#/components/responses/bad_request"},
    "500": {"$ref": "#/components/responses/internal_error"},
    "503": {"$ref": "#/components/responses/unavailable"},
}
ERROR_ANSWERS: dict[str, Schema] = {
    "bad_request": {"description": "the body, a cursor or a header cannot be parsed (JSON), or the HTTP "
                                   "server refused a malformed or oversized request (plain text)",
                    "content": _json(ref("Error")) | {"text/plain": {"schema": {"type": "string"}}}},
    "unauthorized": answer("no valid moderator token", ref("Error"),
                           {"WWW-Authenticate": header("Bearer")}),
    "forbidden": answer("a wrong or expired edit token", ref("Error")),
    "closed": answer("the page is closed for comments (code `closed`)", ref("Error")),
    "not_found": answer("no such comment (or not public)", ref("Error")),
    "duplicate": answer("the same address already left the same text on this page", ref("Error")),
    "payload_too_large": answer("the request body is over COMMENTS_MAX_REQUEST_BYTES", ref("Error")),
    "unsupported_media_type": answer("a content type the endpoint does not read", ref("Error")),
    "validation_error": answer("a field breaks its rule; `fields` names every one", ref("Error")),
    "rate_limited": answer("over the rate limit or the flood interval", ref("Error"), RETRY_AFTER),
    "internal_error": answer("a fault on our side (never with a traceback)", ref("Error")),
    "unavailable": answer("the database does not answer", ref("Error"), RETRY_AFTER),
}


def error_refs(*codes: str, body: bool = False) -> dict[str, Any]:
    """The error answers of an operation by contract code (a body adds 413 and 415), and the common ones."""
    wanted = list(codes) + (["payload_too_large", "unsupported_media_type"] if body else [])
    status_of = {code: status for status, code in STATUS_CODES.items()} | {"closed": 403}
    return {str(status_of[c]): {"$ref": f"#/components/responses/{c}"} for c in wanted} | COMMON_ERRORS


def text(max_length: int, description: str = "") -> Schema:
    """A non-empty string of at most max_length characters."""
    schema: Schema = {"type": "string", "minLength": 1, "maxLength": max_length}
    return schema | ({"description": description} if description else {})


ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NULLABLE_ID: Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ID}
TIME: Schema = {"type": "string", "format": "date-time"}
STATUS: Schema = {"type": "string", "enum": ["pending", "approved", "spam", "trash"]}
WORDS: Schema = {"type": "array", "maxItems": 1000, "items": text(100)}

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


RULES: Schema = _rules()


def object_schema(properties: Schema, required: list[str] | None = None, closed: bool = True) -> Schema:
    """An object with these properties, all required unless told otherwise; closed, it allows no others."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": not closed}


# The contract's own shapes are closed (a public view has exactly its fields); the newer moderators'
# endpoints (people, audit, outbox, webhooks) name what they promise and leave room to grow.
SCHEMAS: dict[str, Schema] = {
    "Error": object_schema({"error": object_schema({
        "code": {"type": "string", "enum": [*STATUS_CODES.values(), "closed"]},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    }, required=["code", "message"])}),
    "Comment": object_schema(PUBLIC_FIELDS),
    "ThreadComment": object_schema(PUBLIC_FIELDS | {"replies": {"type": "array", "items": ref("ThreadComment")}}),
    "Thread": object_schema({
        "page": {"type": "string"}, "total": {"type": "integer", "minimum": 0},
        "comments": {"type": "array", "items": ref("ThreadComment")},
        "next": {"type": ["string", "null"], "description": "pass back as `cursor` for the next page"},
        "closed": {"type": "boolean", "description": "the page takes no new comments"},
    }, required=["page", "total", "comments", "next"]),
    "AuthorComment": object_schema(PUBLIC_FIELDS | {
        "status": {"type": "string", "enum": ["pending", "approved"]},
        "body": {"type": "string", "description": "as its author wrote it"},
    }, required=[*PUBLIC_FIELDS, "status"]),
    "NewComment": object_schema(PUBLIC_FIELDS | {
        "status": {"type": "string", "enum": ["pending", "approved"]},
        "edit_token": {"type": "string", "description": "send as X-Edit-Token to see, edit or delete it"},
    }),
    "CommentIn": {
        "type": "object",
        "description": "Text fields are trimmed before they are checked; other fields are ignored. "
                       "WordPress's names work too: comment (body), comment_post_ID (page), "
                       "comment_parent (parent); a form may add redirect_to.",
        "properties": {
            "page": text(1024),
            "body": text(1_000_000, "1 to COMMENTS_MAX_BODY_CHARS characters"),
            "author": text(245),
            "email": text(254, "a valid address; never published") | {"format": "email"},
            "url": {"type": ["string", "null"], "maxLength": 200, "description": "http(s) only"},
            "parent": {"type": ["integer", "string", "null"], "description": "0 or empty means none"},
            "comment": text(1_000_000), "comment_post_ID": text(1024),
            "comment_parent": {"type": ["integer", "string", "null"]},
            "redirect_to": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["page"]}, {"required": ["comment_post_ID"]}]},
                  {"anyOf": [{"required": ["body"]}, {"required": ["comment"]}]},
                  {"required": ["author", "email"]}],
    },
    "BodyEdit": {"type": "object", "required": ["body"], "properties": {"body": text(1_000_000)},
                 "not": {"required": ["status"]}},
    "Counts": object_schema({s: {"type": "integer", "minimum": 0} for s in STATUS["enum"]}),
    "FullComment": object_schema(PUBLIC_FIELDS | {
        "page": {"type": "string"}, "status": STATUS, "email": {"type": "string"},
        "ip": {"type": ["string", "null"]}, "user_agent": {"type": ["string", "null"]},
        "spam_score": {"type": "number", "minimum": 0, "maximum": 1},
        "spam_reasons": {"type": "array", "items": {"type": "string"}}, "updated_at": TIME,
    }, closed=False),
    "CommentList": object_schema({
        "items": {"type": "array", "items": ref("FullComment")},
        "next": {"type": ["string", "null"]}, "counts": ref("Counts"),
    }),
    "CommentChange": {"type": "object", "properties": {
        "status": {"type": ["string", "null"], "enum": [*STATUS["enum"], None], "description": "null leaves it"},
        "body": text(1_000_000), "author": text(245),
        "url": {"type": ["string", "null"], "maxLength": 200, "description": "null or \"\" removes it"},
    }},
    "Bulk": {"type": "object", "required": ["ids", "status"], "properties": {
        "ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": ID}, "status": STATUS}},
    "BulkResult": object_schema({"updated": {"type": "array", "items": ID},
                                 "missing": {"type": "array", "items": ID}}),
    "Rules": object_schema(RULES),
    "RulesIn": {"type": "object", "required": list(RULES), "properties": RULES,
                "description": "every rule, always: PUT replaces the whole set"},
    "FormToken": object_schema({"token": {"type": "string"}, "page": {"type": "string"}}),
    "PersonExport": object_schema({"email": {"type": "string"}, "comments": {"type": "array", "items": {
        "type": "object", "required": ["id", "page", "status", "author", "email", "body", "created_at"]}}},
        required=["email", "comments"], closed=False),
    "Erased": object_schema({"erased": {"type": "integer", "minimum": 0}}),
    "AuditList": object_schema({"items": {"type": "array", "items": {
        "type": "object", "required": ["id", "created_at", "actor", "action", "comment_id", "from", "to"]}},
        "next": {"type": ["string", "null"]}}, closed=False),
    "OutboxItem": {"type": "object", "required": ["id", "kind", "status", "attempts", "created_at"]},
    "OutboxList": object_schema({"items": {"type": "array", "items": ref("OutboxItem")},
                                 "next": {"type": ["string", "null"]},
                                 "counts": {"type": "object", "additionalProperties": {"type": "integer"}}},
                                closed=False),
    "Webhook": {"type": "object", "required": ["id", "url", "events", "created_at"],
                "properties": {"id": ID, "url": {"type": "string"},
                               "events": {"type": "array", "items": {"type": "string"}},
                               "secret": {"type": "string", "description": "shown once, when it is made"}}},
    "WebhookList": object_schema({"items": {"type": "array", "items": ref("Webhook")},
                                  "events": {"type": "array", "items": {"type": "string"}}}, closed=False),
    "WebhookIn": {"type": "object", "required": ["url", "events"], "properties": {
        "url": {"type": "string", "description": "https, or http to an allowed network"},
        "events": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "secret": {"type": "string", "minLength": 16, "maxLength": 200, "description": "made for you if left out"}}},
    "PageState": object_schema({"page": {"type": "string"}, "closed": {"type": "boolean"}, "counts": ref("Counts")}),
    "PageList": object_schema({"items": {"type": "array", "items": ref("PageState")},
                               "next": {"type": ["string", "null"]}}),
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "moderator": {"type": "http", "scheme": "bearer",
                  "description": "a token made with `comments token create NAME`"},
}
