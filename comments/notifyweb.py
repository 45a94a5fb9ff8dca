"""Thin endpoints of notifications: the pages behind the links in mail (one-click moderation,
confirming and ending reply notices) and the moderators' /api/admin/outbox and /api/admin/webhooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from . import forms, store
from .admin import moderator
from .errors import ApiError, not_found, validation_error
from .http import json_response, route
from .notify import links, render, webhooks
from .security import decode_id_cursor, encode_cursor, new_token
from .service import Service
from .settings import Settings
from .store import outbox, subscriptions

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the address holds the token
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}
NO_STORE = {"Cache-Control": "no-store"}
DONE_WORDS = {"approve": "approved", "spam": "marked as spam", "trash": "moved to the trash"}
BUTTONS = {"approve": "Approve", "spam": "Mark as spam", "trash": "Move to the trash"}
MAX_WEBHOOKS = 50


def _service(request: Request) -> Service:
    return request.app.state.service


async def _token(request: Request) -> str | None:
    """The link's token: from the posted form, else from the address (one-click unsubscribe posts
    only `List-Unsubscribe=One-Click`)."""
    if request.method == "POST":
        try:
            form = await request.form(max_files=0, max_fields=10)
        except Exception:  # noqa: BLE001 - a broken body is simply no token
            form = None
        value = form.get("t") if form is not None else None
        if isinstance(value, str) and value:
            return value
    return request.query_params.get("t")


class MailPages:
    """The small pages behind the links in mail: a GET asks, only the button's POST acts."""

    def __init__(self, settings: Settings) -> None:
        self.templates = render.Templates(settings.mail_templates)

    def page(self, title: str, lines: list[str], status: int = 200, *, action: str | None = None,
             token: str = "", button: str = "") -> HTMLResponse:
        html = self.templates.page({"title": title, "lines": lines, "action": action, "token": token,
                                    "button": button})
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def problem(self, exc: links.LinkProblem) -> HTMLResponse:
        return self.page("This link does not work", [exc.message], exc.status)

    # ---- one-click moderation --------------------------------------------------------------

    def _check(self, service: Service, token: str | None) -> links.ModAction:
        action = links.read_mod_action(service.keys, token, store.utcnow())
        if outbox.moderator_address(service.db, action.target) is None:
            raise links.LinkProblem("This link was sent to an address that is no longer a moderator's.", 403)
        return action

    def _ask(self, service: Service, token: str | None) -> tuple[links.ModAction, dict[str, Any] | None, bool]:
        action = self._check(service, token)
        try:
            comment: dict[str, Any] | None = store.get_full(service.db, action.comment_id)
        except ApiError:
            comment = None
        return action, comment, subscriptions.link_used(service.db, action.digest)

    async def moderate_page(self, request: Request) -> Response:
        token = request.query_params.get("t")
        try:
            action, comment, used = await run_in_threadpool(self._ask, _service(request), token)
        except links.LinkProblem as exc:
            return self.problem(exc)
        if comment is None:
            return self.page("Comment not found", ["This comment was deleted; nothing to do."], 404)
        if used:
            return self.page("Link already used", ["Each of these links works once. Nothing was changed."], 409)
        about = f"Comment #{comment['id']} by {comment['author']} on {comment['page']} (now {comment['status']})."
        return self.page(f"{BUTTONS[action.action]}?", [about, "Nothing changes until you press the button."],
                         action=request.url.path, token=token or "", button=BUTTONS[action.action])

    def _act(self, service: Service, token: str | None) -> tuple[str, str]:
        action = self._check(service, token)
        now = store.utcnow()
        if not subscriptions.use_link(service.db, action.digest, now, action.expires):
            raise links.LinkProblem("Each of these links works once, and this one was used. Nothing was changed.", 409)
        try:
            comment = service.edit_by_moderator(action.comment_id, store.Change(status=action.status), action.actor)
        except ApiError:
            raise links.LinkProblem("This comment was deleted; nothing to do.", 404) from None
        return action.action, f"Comment #{comment['id']} by {comment['author']} was {DONE_WORDS[action.action]}."

    async def moderate(self, request: Request) -> Response:
        try:
            _done, message = await run_in_threadpool(self._act, _service(request), await _token(request))
        except links.LinkProblem as exc:
            return self.problem(exc)
        return self.page("Done", [message])

    # ---- reply notices: confirm, unsubscribe -------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.query_params.get("t")
        try:
            links.read_confirm(_service(request).keys, token, store.utcnow())
        except links.LinkProblem as exc:
            return self.problem(exc)
        return self.page("Confirm email notices of replies",
                         ["You will get an email when a reply to your comment is published, "
                          "with a link to stop these mails in each."],
                         action=request.url.path, token=token or "", button="Confirm")

    async def confirm(self, request: Request) -> Response:
        service = _service(request)
        try:
            found = links.read_confirm(service.keys, await _token(request), store.utcnow())
        except links.LinkProblem as exc:
            return self.problem(exc)
        if not await run_in_threadpool(subscriptions.confirm, service.db, *found, store.utcnow()):
            return self.page("This link does not work", ["There is no such subscription any more."], 404)
        return self.page("Confirmed", ["You will get an email when a reply to your comment is published."])

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.query_params.get("t")
        try:
            links.read_unsubscribe(_service(request).keys, token)
        except links.LinkProblem as exc:
            return self.problem(exc)
        return self.page("Stop email notices of replies?", ["You will get no more mail about replies."],
                         action=request.url.path, token=token or "", button="Unsubscribe")

    async def unsubscribe(self, request: Request) -> Response:
        service = _service(request)
        try:
            found = links.read_unsubscribe(service.keys, await _token(request))
        except links.LinkProblem as exc:
            return self.problem(exc)
        await run_in_threadpool(subscriptions.unsubscribe, service.db, *found, store.utcnow())
        return self.page("Unsubscribed", ["You will get no more mail about replies."])


# ---- moderators' JSON endpoints ------------------------------------------------------------


def _path_id(request: Request, name: str, what: str) -> int:
    value = forms.parse_id(request.path_params[name])
    if value is None:
        raise not_found(what)
    return value


async def list_outbox(request: Request) -> Response:
    await moderator(request)
    service = _service(request)
    status = request.query_params.get("status")
    if status is not None and status not in outbox.OUTBOX_STATUSES:
        raise validation_error({"status": "must be one of " + ", ".join(outbox.OUTBOX_STATUSES)})
    limit = forms.query_limit(request.query_params.get("limit"))
    before = decode_id_cursor(service.keys, request.query_params.get("cursor"))
    items, last, counts = await run_in_threadpool(outbox.list_events, service.db, status, limit, before)
    next_cursor = encode_cursor(service.keys, [last]) if last is not None else None
    return json_response({"items": items, "next": next_cursor, "counts": counts}, headers=NO_STORE)


async def retry_outbox(request: Request) -> Response:
    actor = await moderator(request)
    item = await run_in_threadpool(outbox.retry, _service(request).db, _path_id(request, "event_id", "delivery"),
                                   actor, store.utcnow())
    if item is None:
        raise not_found("delivery")
    return json_response(item, headers=NO_STORE)


async def list_webhooks(request: Request) -> Response:
    await moderator(request)
    items = await run_in_threadpool(outbox.list_webhooks, _service(request).db)
    return json_response({"items": items, "events": list(outbox.EVENTS)}, headers=NO_STORE)


def webhook_in(data: dict[str, Any], settings: Settings) -> tuple[str, list[str], str | None]:
    """A new webhook's URL, events and secret (None: make one), or a 422 naming each bad field."""
    errors: dict[str, str] = {}
    url = data.get("url")
    problem = webhooks.url_problem(url, settings.webhook_allowed_networks)
    if problem:
        errors["url"] = problem
    events = data.get("events")
    if not isinstance(events, list) or not events or any(e not in outbox.EVENTS for e in events):
        errors["events"] = "must be a list of one or more of " + ", ".join(outbox.EVENTS)
    secret = data.get("secret")
    if secret is not None and not (isinstance(secret, str) and 16 <= len(secret) <= 200
                                   and secret.isascii() and secret.isprintable() and " " not in secret):
        errors["secret"] = "must be 16 to 200 printable ASCII characters without spaces (or left out)"
    if errors:
        raise validation_error(errors)
    return str(url), list(dict.fromkeys(events)), secret  # type: ignore[arg-type]


async def add_webhook(request: Request) -> Response:
    actor = await moderator(request)
    service = _service(request)
    url, events, secret = webhook_in(await forms.json_object(request), service.settings)
    if len(await run_in_threadpool(outbox.list_webhooks, service.db)) >= MAX_WEBHOOKS:
        raise ApiError(409, f"at most {MAX_WEBHOOKS} webhooks; remove one first")
    secret = secret or new_token()
    hook = await run_in_threadpool(outbox.add_webhook, service.db, url, events, secret, actor, store.utcnow())
    return json_response({**hook, "secret": secret}, 201, NO_STORE)


async def remove_webhook(request: Request) -> Response:
    actor = await moderator(request)
    gone = await run_in_threadpool(outbox.remove_webhook, _service(request).db,
                                   _path_id(request, "webhook_id", "webhook"), actor, store.utcnow())
    if not gone:
        raise not_found("webhook")
    return Response(status_code=204)


def routes(settings: Settings) -> list[BaseRoute]:
    pages = MailPages(settings)
    handlers: list[tuple[str, dict[str, Callable[[Request], Awaitable[Response]]]]] = [
        ("/mail/moderate", {"GET": pages.moderate_page, "POST": pages.moderate}),
        ("/mail/confirm", {"GET": pages.confirm_page, "POST": pages.confirm}),
        ("/mail/unsubscribe", {"GET": pages.unsubscribe_page, "POST": pages.unsubscribe}),
        ("/api/admin/outbox", {"GET": list_outbox}),
        ("/api/admin/outbox/{event_id}/retry", {"POST": retry_outbox}),
        ("/api/admin/webhooks", {"GET": list_webhooks, "POST": add_webhook}),
        ("/api/admin/webhooks/{webhook_id}", {"DELETE": remove_webhook}),
    ]
    return [route(path, **methods) for path, methods in handlers]
