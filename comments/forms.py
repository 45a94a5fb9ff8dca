"""Request bodies and query strings -> validated values (content types, aliases, limits)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from email_validator import EmailNotValidError, validate_email
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .errors import ApiError, validation_error
from .models import CommentIn, Rules

MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")

# WordPress's comment form names its fields differently; an existing form posts here unchanged.
ALIASES = {"comment": "body", "comment_post_ID": "page", "comment_parent": "parent"}
HONEYPOT = "homepage"  # the field people never fill: the embed and the plain form hide it
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_fields(request: Request) -> tuple[dict[str, Any], bool]:
    """The posted fields (aliases resolved) and whether they came from an HTML form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "the body is not valid JSON (UTF-8)") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return _resolve_aliases(data), False
    if content_type in FORM_TYPES:
        try:
            form = await request.form(max_files=0, max_fields=100)
        except ApiError:
            raise
        except Exception:  # python-multipart raises several types for broken bodies
            raise ApiError(400, "the form body cannot be parsed") from None
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise ApiError(400, "file uploads are not accepted")
            fields.setdefault(key, value)
        return _resolve_aliases(fields), True
    raise ApiError(
        415, "send application/json, application/x-www-form-urlencoded or multipart/form-data"
    )


def _resolve_aliases(data: Mapping[str, Any]) -> dict[str, Any]:
    fields = dict(data)
    for alias, name in ALIASES.items():
        if alias in fields and name not in fields:
            fields[name] = fields[alias]
    return fields


def _text(
    fields: Mapping[str, Any], name: str, errors: dict[str, str], *, limit: int,
    required: bool = True, multiline: bool = False,
) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors[name] = "is required"
        return None
    if not isinstance(value, str):
        errors[name] = "must be a string"
        return None
    value = value.strip()
    if "\x00" in value or (_CONTROL if multiline else _LINE_CONTROL).search(value):
        errors[name] = "contains control characters"
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        errors[name] = "is not valid Unicode text"
        return None
    if len(value) > limit:
        errors[name] = f"is longer than {limit} characters"
        return None
    return value


def normalise_email(value: str) -> str:
    """The address in normalised form (domain lower-cased and IDNA-checked), or ValueError."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValueError("not a valid address") from None


def normalise_url(value: str) -> str:
    """An http(s) URL; a bare host gets https://. ValueError otherwise."""
    if re.search(r"\s", value):
        raise ValueError("not a valid http or https address")
    if "://" not in value and not value.lower().startswith(("http:", "https:")):
        if ":" in value.split("/")[0] and not re.match(r"^[^:/]+:\d+(/|$)", value):
            raise ValueError("only http and https addresses are accepted")
        value = "https://" + value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise ValueError("not a valid http or https address") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValueError("only http and https addresses are accepted")
    if not host or "." not in host.strip(".") and host != "localhost":
        raise ValueError("not a valid http or https address")
    if len(value) > 200:
        raise ValueError("is longer than 200 characters")
    return value


def parse_id(value: Any) -> int | None:
    """A positive id from a string of ASCII digits or an int; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
        return number if 0 < number <= MAX_ID else None
    return None


def comment_in(fields: Mapping[str, Any], max_body_chars: int) -> CommentIn:
    """Validate a new comment; a 422 names every failing field."""
    errors: dict[str, str] = {}
    page = _text(fields, "page", errors, limit=1024)
    body = _text(fields, "body", errors, limit=max_body_chars, multiline=True)
    author = _text(fields, "author", errors, limit=245)
    email = _text(fields, "email", errors, limit=254)
    url = _text(fields, "url", errors, limit=200, required=False)
    if email is not None:
        try:
            email = normalise_email(email)
        except ValueError as exc:
            errors["email"] = str(exc)
    if url is not None:
        try:
            url = normalise_url(url)
        except ValueError as exc:
            errors["url"] = str(exc)
    parent = fields.get("parent")
    parent_id: int | None = None
    if parent not in (None, "", 0, "0"):
        parent_id = parse_id(parent.strip() if isinstance(parent, str) else parent)
        if parent_id is None:
            errors["parent"] = "must be the id of a comment"
    if errors or page is None or body is None or author is None or email is None:
        raise validation_error(errors)  # a required field that is missing has its error
    return CommentIn(page=page, body=body, author=author, email=email, url=url, parent=parent_id)


def body_edit(fields: Mapping[str, Any], max_body_chars: int) -> str:
    """The new body of an author's edit."""
    errors: dict[str, str] = {}
    if "status" in fields:
        errors["status"] = "cannot be changed with an edit token"
    body = _text(fields, "body", errors, limit=max_body_chars, multiline=True)
    if errors or body is None:
        raise validation_error(errors)
    return body


def query_limit(value: str | None, default: int = 50, maximum: int = 200) -> int:
    """The `limit` query parameter: 1 to maximum, or a 422."""
    if value is None:
        return default
    number = parse_id(value)
    if number is None or number > maximum:
        raise validation_error({"limit": f"must be a whole number from 1 to {maximum}"})
    return number


async def json_object(request: Request) -> dict[str, Any]:
    """A JSON object body for the admin endpoints, or 400/415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "send application/json")
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not valid JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def validated_edit(data: Mapping[str, Any], max_body_chars: int, errors: dict[str, str]) -> dict[str, Any]:
    """A moderator's edit of body, author and url (each optional; url null or "" removes it)."""
    result: dict[str, Any] = {}
    if "body" in data:
        result["body"] = _text(data, "body", errors, limit=max_body_chars, multiline=True)
    if "author" in data:
        result["author"] = _text(data, "author", errors, limit=245)
    if "url" in data:
        if data["url"] is None or data["url"] == "":
            result["clear_url"] = True
        else:
            url = _text(data, "url", errors, limit=200, required=False)
            if url is not None:
                try:
                    result["url"] = normalise_url(url)
                except ValueError as exc:
                    errors["url"] = str(exc)
    return {k: v for k, v in result.items() if v is not None}


def rules_in(data: Mapping[str, Any]) -> Rules:
    """A whole set of moderation rules (PUT replaces all of them), or a 422 naming each bad value."""
    errors: dict[str, str] = {}
    defaults = Rules()
    values: dict[str, Any] = {}
    for name in Rules.model_fields:
        if name not in data:
            errors[name] = "is required"
            continue
        value = data[name]
        default = getattr(defaults, name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**7
        elif isinstance(default, list):
            ok = (isinstance(value, list) and len(value) <= 1000
                  and all(isinstance(w, str) and 0 < len(w.strip()) <= 100 and "\x00" not in w for w in value))
            if ok:
                value = list(dict.fromkeys(w.strip() for w in value))
        else:
            ok = value in ("all", "rules")
        if not ok:
            errors[name] = _RULE_HINTS[name]
        values[name] = value
    if errors:
        raise validation_error(errors)
    if values["edit_window_seconds"] > 7 * 86400:
        raise validation_error({"edit_window_seconds": "at most 604800 (a week)"})
    if values["hold_threshold"] > values["spam_threshold"]:
        raise validation_error({"hold_threshold": "must not be above spam_threshold"})
    return Rules(**values)


_RULE_HINTS = {
    "moderation": "must be \"all\" or \"rules\"",
    "moderation_words": "must be a list of words (1 to 100 characters each, at most 1000)",
    "blocked_words": "must be a list of words (1 to 100 characters each, at most 1000)",
    "max_links": "must be a whole number from 0",
    "auto_approve_known_authors": "must be true or false",
    "flood_seconds": "must be a whole number of seconds from 0",
    "edit_window_seconds": "must be a whole number of seconds from 0",
    "spam_threshold": "must be a number from 0 to 1",
    "hold_threshold": "must be a number from 0 to 1",
}


@dataclass(frozen=True)
class SpamFields:
    """What the service's own form adds for spam defence (see the README): never part of the comment."""

    honeypot_filled: bool
    form_token: str | None  # a token that is not text at all is kept as "" (it counts as forged)


def spam_fields(fields: Mapping[str, Any]) -> SpamFields:
    honeypot = fields.get(HONEYPOT)
    token = fields.get("form_token")
    return SpamFields(
        honeypot_filled=bool(honeypot.strip()) if isinstance(honeypot, str) else honeypot not in (None, "", False),
        form_token=(token.strip() or None) if isinstance(token, str) else (None if token is None else ""),
    )


def notify_requested(fields: Mapping[str, Any]) -> bool:
    """Whether the "Notify me of follow-up comments by email" box was ticked (field `notify`)."""
    value = fields.get("notify")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "true", "yes")
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)
