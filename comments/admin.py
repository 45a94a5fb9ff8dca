"""Thin moderation endpoints; every one needs a moderator's bearer token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import forms, store
from .errors import ApiError, not_found, unauthorized, validation_error
from .http import json_response, route
from .models import STATUSES, Rules, full_view
from .security import decode_cursor, decode_id_cursor, encode_cursor
from .service import Service

NO_STORE = {"Cache-Control": "no-store"}
MAX_BULK = 1000


def _service(request: Request) -> Service:
    return request.app.state.service


async def moderator(request: Request) -> str:
    """The name of the moderator making this request, or the one identical 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 200:
        raise unauthorized()
    name = await run_in_threadpool(store.authenticate, _service(request).db, token.strip(), store.utcnow())
    if name is None:
        raise unauthorized()
    return name


def _status(value: Any, field: str = "status") -> str:
    if value not in STATUSES:
        raise validation_error({field: "must be one of " + ", ".join(STATUSES)})
    return str(value)


def _list_cursor(service: Service, cursor: str | None, status: str) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    moment, comment_id, kind = decode_cursor(service.keys, cursor, 3)
    if kind != status or not isinstance(moment, str) or not isinstance(comment_id, int):
        raise ApiError(400, "cursor: not a cursor for this list")
    try:
        return datetime.fromisoformat(moment), comment_id
    except ValueError:
        raise ApiError(400, "cursor: not a cursor this service made") from None


async def list_comments(request: Request) -> Response:
    await moderator(request)
    service = _service(request)
    query = request.query_params
    status = _status(query.get("status", "pending"))
    page = query.get("page")
    q = query.get("q")
    errors = {}
    if page is not None and not 0 < len(page) <= 1024:
        errors["page"] = "must be 1 to 1024 characters"
    if q is not None and len(q) > 200:
        errors["q"] = "must be at most 200 characters"
    if errors:
        raise validation_error(errors)
    limit = forms.query_limit(query.get("limit"))
    cursor = query.get("cursor")
    after = await run_in_threadpool(_list_cursor, service, cursor, status)
    listing = await run_in_threadpool(store.list_comments, service.db, status, page, q, limit, after)
    next_cursor = None
    if listing.next_key is not None:
        next_cursor = encode_cursor(service.keys, [listing.next_key[0].isoformat(), listing.next_key[1], status])
    items = [full_view(item) for item in listing.items]
    return json_response({"items": items, "next": next_cursor, "counts": listing.counts}, headers=NO_STORE)


def _comment_id(request: Request) -> int:
    comment_id = forms.parse_id(request.path_params["comment_id"])
    if comment_id is None:
        raise not_found()
    return comment_id


async def get_comment(request: Request) -> Response:
    await moderator(request)
    comment = await run_in_threadpool(store.get_full, _service(request).db, _comment_id(request))
    return json_response(full_view(comment), headers=NO_STORE)


def _change(data: dict[str, Any], max_body_chars: int) -> store.Change:
    errors: dict[str, str] = {}
    status = data.get("status")
    if status is not None and status not in STATUSES:
        errors["status"] = "must be one of " + ", ".join(STATUSES)
    checked = forms.validated_edit(data, max_body_chars, errors)
    if errors:
        raise validation_error(errors)
    return store.Change(status=status, **checked)


async def patch_comment(request: Request) -> Response:
    actor = await moderator(request)
    service = _service(request)
    comment_id = _comment_id(request)
    change = _change(await forms.json_object(request), service.settings.max_body_chars)
    comment = await run_in_threadpool(service.edit_by_moderator, comment_id, change, actor)
    return json_response(full_view(comment), headers=NO_STORE)


async def bulk(request: Request) -> Response:
    actor = await moderator(request)
    data = await forms.json_object(request)
    ids = data.get("ids")
    errors = {}
    if not isinstance(ids, list) or not ids or len(ids) > MAX_BULK:
        errors["ids"] = f"must be a list of 1 to {MAX_BULK} comment ids"
    elif any(forms.parse_id(i) is None or isinstance(i, str) for i in ids):
        errors["ids"] = "every id must be a positive whole number"
    if data.get("status") not in STATUSES:
        errors["status"] = "must be one of " + ", ".join(STATUSES)
    if errors or not isinstance(ids, list):
        raise validation_error(errors)
    unique = list(dict.fromkeys(ids))
    updated, missing = await run_in_threadpool(
        store.bulk_status, _service(request).db, unique, data["status"], actor, store.utcnow()
    )
    return json_response({"updated": updated, "missing": missing}, headers=NO_STORE)


async def delete_comment(request: Request) -> Response:
    actor = await moderator(request)
    await run_in_threadpool(store.delete_comment, _service(request).db, _comment_id(request), actor,
                            store.utcnow())
    return Response(status_code=204)


async def get_rules(request: Request) -> Response:
    await moderator(request)
    rules = await run_in_threadpool(store.get_rules, _service(request).db)
    return json_response(rules.model_dump(), headers=NO_STORE)


async def put_rules(request: Request) -> Response:
    actor = await moderator(request)
    rules = forms.rules_in(await forms.json_object(request))
    saved: Rules = await run_in_threadpool(store.put_rules, _service(request).db, rules, actor, store.utcnow())
    return json_response(saved.model_dump(), headers=NO_STORE)


async def list_pages(request: Request) -> Response:
    await moderator(request)
    service = _service(request)
    limit = forms.query_limit(request.query_params.get("limit"))
    after = decode_id_cursor(service.keys, request.query_params.get("cursor"))
    items, last = await run_in_threadpool(store.list_pages, service.db, limit, after)
    next_cursor = encode_cursor(service.keys, [last]) if last is not None else None
    return json_response({"items": items, "next": next_cursor}, headers=NO_STORE)


async def patch_page(request: Request) -> Response:
    actor = await moderator(request)
    page = request.query_params.get("page")
    if not page or len(page) > 1024:
        raise validation_error({"page": "must be 1 to 1024 characters"})
    data = await forms.json_object(request)
    if not isinstance(data.get("closed"), bool):
        raise validation_error({"closed": "must be true or false"})
    result = await run_in_threadpool(store.set_closed, _service(request).db, page, data["closed"], actor,
                                     store.utcnow())
    return json_response(result, headers=NO_STORE)


def _person(request: Request) -> str:
    email = request.query_params.get("email")
    if not email or len(email) > 254:
        raise validation_error({"email": "is required (at most 254 characters)"})
    try:
        return forms.normalise_email(email.strip())
    except ValueError:
        raise validation_error({"email": "not a valid address"}) from None


async def export_person(request: Request) -> Response:
    actor = await moderator(request)
    email = _person(request)
    db = _service(request).db
    items = await run_in_threadpool(store.export_person, db, email, actor, store.utcnow())
    notices = await run_in_threadpool(store.subscriptions.subscription_state, db, email)
    return json_response({"email": email, "comments": items, "reply_notices": notices}, headers=NO_STORE)


async def erase_person(request: Request) -> Response:
    actor = await moderator(request)
    email = _person(request)
    body = request.query_params.get("body", "keep")
    if body not in ("keep", "replace"):
        raise validation_error({"body": "must be keep or replace"})
    erased = await run_in_threadpool(_service(request).erase_person, email, body == "keep", actor)
    return json_response({"erased": erased}, headers=NO_STORE)


def _moment(value: str | None, name: str, errors: dict[str, str]) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors[name] = "must be an RFC 3339 time like 2026-11-29T18:37:04Z"
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


async def audit(request: Request) -> Response:
    await moderator(request)
    service = _service(request)
    query = request.query_params
    errors: dict[str, str] = {}
    comment_id = None
    if query.get("comment") is not None:
        comment_id = forms.parse_id(query["comment"])
        if comment_id is None:
            errors["comment"] = "must be a comment id"
    since = _moment(query.get("since"), "since", errors)
    until = _moment(query.get("until"), "until", errors)
    for name in ("actor", "action"):
        if len(query.get(name) or "") > 100:
            errors[name] = "must be at most 100 characters"
    if errors:
        raise validation_error(errors)
    limit = forms.query_limit(query.get("limit"))
    before = decode_id_cursor(service.keys, query.get("cursor"))
    items, last = await run_in_threadpool(
        lambda: store.read_audit(service.db, actor=query.get("actor"), action=query.get("action"),
                                 comment_id=comment_id, since=since, until=until, limit=limit, before_id=before))
    next_cursor = encode_cursor(service.keys, [last]) if last is not None else None
    return json_response({"items": items, "next": next_cursor}, headers=NO_STORE)


def routes() -> list[Route]:
    return [
        route("/api/admin/comments", GET=list_comments),
        route("/api/admin/comments/bulk", POST=bulk),
        route("/api/admin/comments/{comment_id:int}", GET=get_comment, PATCH=patch_comment, DELETE=delete_comment),
        route("/api/admin/rules", GET=get_rules, PUT=put_rules),
        route("/api/admin/pages", GET=list_pages, PATCH=patch_page),
        route("/api/admin/people", GET=export_person, DELETE=erase_person),
        route("/api/admin/audit", GET=audit),
    ]
