"""Thin public endpoints: leave a reply, read a thread, one comment, counts, author edits, health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import forms, store
from .errors import ApiError, not_found, unavailable, validation_error
from .http import dumps, json_response, raw_json, route
from .models import public_view
from .security import client_ip, decode_cursor, safe_redirect
from .service import Service


def _service(request: Request) -> Service:
    return request.app.state.service


def reader_ip(request: Request) -> str | None:
    """The reader's address, believing X-Forwarded-For only from trusted proxies."""
    service = _service(request)
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), service.settings.trusted_proxies)


def _prefers_html(accept: str) -> bool:
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media.strip().lower()] = quality
    html = best.get("text/html", 0.0)
    return html > 0 and html >= best.get("application/json", 0.0)


async def create_comment(request: Request) -> Response:
    service = _service(request)
    fields, from_form = await forms.read_fields(request)
    data = forms.comment_in(fields, service.settings.max_body_chars)
    user_agent = request.headers.get("user-agent", "")[:512] or None
    defence = forms.spam_fields(fields)
    comment = await run_in_threadpool(service.create_comment, data, reader_ip(request), user_agent, defence,
                                      notify=forms.notify_requested(fields))
    status = 201 if comment["status"] == "approved" else 202
    if from_form and _prefers_html(request.headers.get("accept", "")):
        target = fields.get("redirect_to") if isinstance(fields.get("redirect_to"), str) else None
        location = safe_redirect(target or request.headers.get("referer"),
                                 service.settings.site_origins, f"comment-{comment['id']}")
        if location:
            return RedirectResponse(location, status_code=303)
    shown = {**public_view(comment), "status": store.comments.author_status(comment["status"]),
             "edit_token": comment["edit_token"]}
    return json_response(shown, status, {"Cache-Control": "no-store"})


def _thread_cursor(service: Service, cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    moment, comment_id = decode_cursor(service.keys, cursor, 2)
    try:
        if not isinstance(moment, str) or not isinstance(comment_id, int):
            raise ValueError
        return datetime.fromisoformat(moment), comment_id
    except ValueError:
        raise ApiError(400, "cursor: not a cursor this service made") from None


def _page_param(request: Request) -> str:
    page = request.query_params.get("page")
    if page is None or not page.strip():
        raise validation_error({"page": "is required"})
    if len(page) > 1024 or "\x00" in page:
        raise validation_error({"page": "must be 1 to 1024 characters"})
    return page


async def thread(request: Request) -> Response:
    service = _service(request)
    page = _page_param(request)
    limit = forms.query_limit(request.query_params.get("limit"))
    cursor = request.query_params.get("cursor")
    after = None if cursor is None else await run_in_threadpool(_thread_cursor, service, cursor)
    etag, body = await run_in_threadpool(service.thread, page, limit, after, cursor, dumps)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return raw_json(body, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _comment_id(request: Request) -> int:
    comment_id = forms.parse_id(request.path_params["comment_id"])
    if comment_id is None:
        raise not_found()
    return comment_id


async def one_comment(request: Request) -> Response:
    service = _service(request)
    comment_id = _comment_id(request)
    token = request.headers.get("x-edit-token")
    if token is not None:
        comment = await run_in_threadpool(store.author_view, service.db, service.keys, comment_id, token,
                                          store.utcnow())
        return json_response(comment, headers={"Cache-Control": "no-store"})
    found = await run_in_threadpool(store.public_comment, service.db, comment_id)
    if found is None:
        raise not_found()
    return json_response(found)


async def edit_comment(request: Request) -> Response:
    service = _service(request)
    comment_id = _comment_id(request)
    fields, _ = await forms.read_fields(request)
    body = forms.body_edit(fields, service.settings.max_body_chars)
    comment = await run_in_threadpool(service.edit_by_author, comment_id,
                                      request.headers.get("x-edit-token"), body)
    return json_response(comment, headers={"Cache-Control": "no-store"})


async def delete_comment(request: Request) -> Response:
    service = _service(request)
    comment_id = _comment_id(request)
    await run_in_threadpool(store.author_delete, service.db, service.keys, comment_id,
                            request.headers.get("x-edit-token"), store.utcnow())
    return Response(status_code=204)


async def counts(request: Request) -> Response:
    pages = request.query_params.getlist("page")
    if len(pages) > 200:
        raise validation_error({"page": "at most 200 pages at once"})
    if any(len(p) > 1024 or not p for p in pages):
        raise validation_error({"page": "must be 1 to 1024 characters"})
    result: dict[str, Any] = await run_in_threadpool(store.counts, _service(request).db, pages)
    return json_response(result)


async def form_token(request: Request) -> Response:
    """A signed token for the comment form of a page (see the README: spam defence)."""
    page = _page_param(request)
    token = await run_in_threadpool(_service(request).form_token, page)
    return json_response({"token": token, "page": page}, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    try:
        await run_in_threadpool(_service(request).db.ping)
    except Exception:  # noqa: BLE001 - any failure to answer is "unavailable"
        raise unavailable() from None
    return json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [
        route("/api/comments", GET=thread, POST=create_comment),
        route("/api/comments/{comment_id:int}", GET=one_comment, PATCH=edit_comment, DELETE=delete_comment),
        route("/api/counts", GET=counts),
        route("/api/form-token", GET=form_token),
        route("/healthz", GET=healthz),
    ]
