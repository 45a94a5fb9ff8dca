"""The moderators' web page at /admin: the queue, its actions, the rules, pages and tokens, server-rendered."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from . import adminsession as sess
from . import forms, sanitize, store
from .adminsession import Refused, Visit, back_url, list_url, next_url
from .adminviews import (
    ACTION_LABELS, ACTIONS, DONE, LABELS, OFFERED, article_url, bulk_message, item_view, rule_fields, rules_from_form,
    time_view,
)
from .errors import STATUS_CODES, ApiError, validation_error
from .http import json_response, route
from .models import STATUSES
from .security import decode_cursor, encode_cursor
from .service import Service
from .settings import Settings
from .store import guarded

HERE = Path(__file__).parent
STATIC = {"admin.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8"}
MAX_BULK = 1000
PAGE_SIZE = 50


class AdminWeb:
    """The page's handlers, with the templates they render."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.assets = {name: (HERE / "static" / name).read_bytes() for name in STATIC}
        self.versions = {name: hashlib.sha256(body).hexdigest()[:16] for name, body in self.assets.items()}

    # ---- answers ------------------------------------------------------------------------

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        page = {"js": f"/admin/static/admin.js?v={self.versions['admin.js']}",
                "css": f"/admin/static/admin.css?v={self.versions['admin.css']}",
                "moderator": None, "csrf": "", "section": "", "tab": "", **context}
        return HTMLResponse(self.env.get_template(name).render(page), status_code=status)

    def page(self, v: Visit, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        return self.render(name, {"moderator": v.session.name, "csrf": v.csrf, **context}, code)

    def problem(self, v: Visit | None, status: int, message: str, fields: dict[str, str] | None = None,
                back: str = "/admin", **extra: Any) -> Response:
        """An error as JSON (for admin.js) or as a page saying what happened and that nothing changed."""
        if v is None or v.wants_json:
            error: dict[str, Any] = {"code": STATUS_CODES.get(status, "bad_request"), "message": message}
            if fields:
                error["fields"] = fields
            return json_response({"error": {**error, **extra}}, status, {"Cache-Control": "no-store"})
        return self.page(v, "admin_message.html", status, title=_TITLES.get(status, "Something went wrong"),
                         message=message, fields=fields or {}, back=back)

    def done(self, v: Visit, back: str, message: str, undo: list[dict[str, Any]], **extra: Any) -> Response:
        """A finished action: JSON for admin.js, else back to the list with a message and an Undo button."""
        if v.wants_json:
            return json_response({"message": message, "undo": undo, **extra})
        response = RedirectResponse(back, status_code=303)
        offer = undo[0] if len(undo) == 1 and len(undo[0]["ids"]) <= 200 else None
        sess.set_flash(response, v.service.keys, {"m": message, "k": "ok", "u": offer, "b": back}, v.secure)
        return response

    # ---- sign-in --------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        service = sess.service_of(request)
        session, _ = await run_in_threadpool(sess.load, service.db, service.keys,
                                             request.cookies.get(sess.COOKIE), store.utcnow())
        if session is not None:
            return RedirectResponse("/admin", status_code=303)
        ended = request.query_params.get("ended", "")
        return self.render("admin_signin.html", {"notice": sess.ENDED.get(ended), "error": None,
                                                 "next": next_url(request.query_params.get("next"))})

    async def signin(self, request: Request) -> Response:
        service = sess.service_of(request)
        secure = sess.is_https(request, service.settings)
        if sess.cross_site(request):
            return self.render("admin_signin.html", {"notice": None, "error": sess.CROSS_SITE, "next": "/admin"}, 403)
        try:
            form = await sess.read_form(request)
        except ApiError as exc:
            return self.render("admin_signin.html", {"notice": None, "error": exc.message, "next": "/admin"},
                               exc.status)
        token = form.get("token")
        after = next_url(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
        result = await run_in_threadpool(sess.sign_in, service.db, service.keys,
                                         token if isinstance(token, str) else "",
                                         sess.client_address(request, service.settings), store.utcnow())
        if result.retry_after:
            minutes = -(-result.retry_after // 60)
            error = (f"Too many failed sign-ins from your address. Try again in {minutes} "
                     f"minute{'s' if minutes != 1 else ''}.")
            response: Response = self.render("admin_signin.html", {"notice": None, "error": error, "next": after},
                                             429)
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        if result.session is None:
            return self.render("admin_signin.html", {"notice": None, "error": "That token was not accepted.",
                                                     "next": after}, 401)
        response = RedirectResponse(after, status_code=303)
        sess.set_session_cookie(response, sess.encode(service.keys, result.session), secure)
        return response

    async def signout(self, v: Visit) -> Response:
        v.keep_session = False
        response = RedirectResponse("/admin/signin?ended=signed-out", status_code=303)
        sess.clear_session_cookie(response, v.secure)
        return response

    # ---- the queue ------------------------------------------------------------------------

    async def queue(self, v: Visit) -> Response:
        query = v.request.query_params
        status = query.get("status") or "pending"
        page = query.get("page") if (query.get("page") or "").strip() else None
        text = (query.get("q") or "").strip() or None
        errors = {}
        if status not in STATUSES:
            errors["status"] = "must be one of " + ", ".join(STATUSES)
        if page is not None and len(page) > 1024:
            errors["page"] = "must be 1 to 1024 characters"
        if text is not None and len(text) > 200:
            errors["q"] = "must be at most 200 characters"
        if errors:
            raise validation_error(errors)
        limit = forms.query_limit(query.get("limit"), PAGE_SIZE)
        context = await run_in_threadpool(self._queue, v.service, status, page, text, limit, query.get("cursor"))
        flash = sess.take_flash(v.request, v.service.keys)
        response = self.page(v, "admin_queue.html", section="queue", tab=status, flash=flash, **context)
        if v.request.cookies.get(sess.FLASH_COOKIE):
            sess.clear_flash(response, v.secure)
        return response

    def _queue(self, service: Service, status: str, page: str | None, text: str | None, limit: int,
               cursor: str | None) -> dict[str, Any]:
        after = None
        if cursor:
            moment, last_id, kind = decode_cursor(service.keys, cursor, 3)
            if kind != status or not isinstance(moment, str) or not isinstance(last_id, int):
                raise ApiError(400, "cursor: not a cursor for this list")
            try:
                after = (datetime.fromisoformat(moment), last_id)
            except ValueError:
                raise ApiError(400, "cursor: not a cursor this service made") from None
        listing = store.list_comments(service.db, status, page, text, limit, after)
        parents = guarded.parent_openings(service.db, [c["parent"] for c in listing.items if c["parent"]])
        later = None
        if listing.next_key is not None:
            made = encode_cursor(service.keys, [listing.next_key[0].isoformat(), listing.next_key[1], status])
            later = list_url(status=status, page=page, q=text, cursor=made)
        here = {"status": status, "page": page, "q": text, "cursor": cursor,
                "limit": limit if limit != PAGE_SIZE else None}
        return {
            "status": status, "page": page, "q": text, "labels": LABELS, "action_labels": ACTION_LABELS,
            "items": [item_view(c, parents, self.settings.site_origins) for c in listing.items],
            "tabs": [{"status": s, "label": LABELS[s], "count": listing.counts[s], "current": s == status,
                      "url": list_url(status=s, page=page, q=text)} for s in STATUSES],
            "bulk_actions": [a for a in OFFERED[status] if a != "delete"],
            "back": urlencode({k: v for k, v in here.items() if v}),
            "next_url": later, "first_url": list_url(status=status, page=page, q=text) if cursor else None,
            "clear_url": list_url(status=status),
        }

    # ---- actions --------------------------------------------------------------------------

    def _comment_id(self, v: Visit) -> int:
        comment_id = forms.parse_id(v.request.path_params["comment_id"])
        if comment_id is None:
            raise ApiError(404, "There is no such comment. Nothing was changed.")
        return comment_id

    def _expected(self, v: Visit) -> str | None:
        seen = v.field("from_status") or None
        if seen is not None and seen not in STATUSES:
            raise validation_error({"from_status": "must be one of " + ", ".join(STATUSES)})
        return seen

    def _target(self, v: Visit) -> str | None:
        action = v.field("action") or ""
        if action == "status":
            to = v.field("to")
            if to not in STATUSES:
                raise validation_error({"to": "must be one of " + ", ".join(STATUSES)})
            return to
        if action not in ACTIONS:
            raise validation_error({"action": "must be one of " + ", ".join([*ACTIONS, "delete", "status"])})
        return ACTIONS[action]

    async def act(self, v: Visit) -> Response:
        comment_id = self._comment_id(v)
        expected = self._expected(v)
        back = back_url(v.field("back"))
        actor, now, db = v.session.name, store.utcnow(), v.service.db
        if v.field("action") == "delete":
            if v.field("confirm") != "yes":
                return self.page(v, "admin_confirm.html", comment_id=comment_id, from_status=expected or "",
                                 back=back, back_query=v.field("back") or "")
            was = await _checked(run_in_threadpool(guarded.delete_seen, db, comment_id, expected, actor, now),
                                 comment_id, expected)
            return self.done(v, back, f"Deleted comment #{comment_id} for good.", [],
                             id=comment_id, **{"from": was, "to": None})
        target = self._target(v)
        undo = v.field("action") == "status"  # only Undo posts an explicit status
        was, now_status = await _checked(
            run_in_threadpool(guarded.set_status, db, comment_id, target, expected, actor, now, undo),
            comment_id, expected)
        if was == now_status:
            message = f"Comment #{comment_id} was already in {LABELS[was]}; nothing changed."
            offer: list[dict[str, Any]] = []
        else:
            message = f"{DONE[now_status]}: comment #{comment_id}."
            offer = [{"ids": [comment_id], "to": was, "from_status": now_status}]
        return self.done(v, back, message, offer, id=comment_id, **{"from": was, "to": now_status})

    async def bulk(self, v: Visit) -> Response:
        assert v.form is not None
        raw = [x for x in v.form.getlist("ids") if isinstance(x, str)]
        ids = [forms.parse_id(x) for x in raw]
        if not ids or len(ids) > MAX_BULK or any(i is None for i in ids):
            raise validation_error({"ids": f"select 1 to {MAX_BULK} comments"})
        if v.field("action") == "delete":
            raise validation_error({"action": "delete comments one at a time"})
        target, expected = self._target(v), self._expected(v)
        unique = list(dict.fromkeys(i for i in ids if i is not None))
        result = await run_in_threadpool(guarded.set_status_many, v.service.db, unique, target, expected,
                                         v.session.name, store.utcnow(), v.field("action") == "status")
        groups: dict[tuple[str, str], list[int]] = {}
        for comment_id, was, now_status in result.changed:
            if was != now_status:
                groups.setdefault((was, now_status), []).append(comment_id)
        undo = [{"ids": ids_, "to": was, "from_status": to} for (was, to), ids_ in groups.items()]
        return self.done(v, back_url(v.field("back")), bulk_message(result), undo,
                         changed=result.changed, moved=result.moved, missing=result.missing)

    async def edit(self, v: Visit) -> Response:
        comment_id = self._comment_id(v)
        data = {k: v.field(k) for k in ("body", "author", "url") if v.field(k) is not None}
        errors: dict[str, str] = {}
        checked = forms.validated_edit(data, v.service.settings.max_body_chars, errors)
        if errors:
            raise validation_error(errors)
        comment = await _checked(run_in_threadpool(v.service.edit_by_moderator, comment_id,
                                                   store.Change(**checked), v.session.name), comment_id, None)
        message = f"Saved comment #{comment_id}."
        if not v.wants_json:
            return self.done(v, back_url(v.field("back")), message, [])
        html = await run_in_threadpool(self._item_html, v, comment)
        return json_response({"message": message, "id": comment_id, "html": html})

    def _item_html(self, v: Visit, comment: dict[str, Any]) -> str:
        parents = guarded.parent_openings(v.service.db, [comment["parent"]] if comment["parent"] else [])
        view = item_view(comment, parents, self.settings.site_origins)
        return self.env.get_template("admin_item.html").render(c=view, csrf=v.csrf, back=v.field("back") or "",
                                                             moderator=v.session.name)

    async def reply(self, v: Visit) -> Response:
        comment_id = self._comment_id(v)
        expected = self._expected(v)
        errors: dict[str, str] = {}
        checked = forms.validated_edit({"body": v.field("body"), "author": v.field("author") or v.session.name},
                                       v.service.settings.max_body_chars, errors)
        if errors:
            raise validation_error(errors)
        made = await _checked(run_in_threadpool(_publish_reply, v.service, comment_id, expected, checked["body"],
                                                checked["author"], v.session.name), comment_id, expected)
        message = f"Published your reply #{made['id']} to comment #{comment_id}."
        if made["parent_was"] == "pending":
            message += f" Comment #{comment_id} is approved now."
        return self.done(v, back_url(v.field("back")), message, [], id=comment_id, reply=made["id"],
                         **{"from": made["parent_was"], "to": "approved"})

    # ---- settings: rules, pages, tokens -----------------------------------------------------

    async def settings_page(self, v: Visit) -> Response:
        rules = await run_in_threadpool(store.get_rules, v.service.db)
        return await self._settings(v, rules.model_dump(), {}, 200)

    async def _settings(self, v: Visit, values: dict[str, Any], errors: dict[str, str], status: int) -> Response:
        cursor = v.request.query_params.get("cursor")
        context = await run_in_threadpool(self._settings_data, v.service, cursor)
        flash = sess.take_flash(v.request, v.service.keys)
        response = self.page(v, "admin_settings.html", status, section="settings", flash=flash,
                             fields=rule_fields(values, errors), errors=errors, **context)
        if v.request.cookies.get(sess.FLASH_COOKIE):
            sess.clear_flash(response, v.secure)
        return response

    def _settings_data(self, service: Service, cursor: str | None) -> dict[str, Any]:
        after = None
        if cursor:
            (after,) = decode_cursor(service.keys, cursor, 1)
            if not isinstance(after, int):
                raise ApiError(400, "cursor: not a cursor this service made")
        pages, last = store.list_pages(service.db, PAGE_SIZE, after)
        tokens = store.list_tokens(service.db)
        return {
            "pages": [{**p, "queue": list_url(page=p["page"]), "article": article_url(p["page"], self.settings.site_origins),
                       "links": {s: list_url(status=s, page=p["page"]) for s in STATUSES}} for p in pages],
            "pages_next": f"/admin/settings?{urlencode({'cursor': encode_cursor(service.keys, [last])})}"
                          if last is not None else None,
            "pages_first": "/admin/settings" if cursor else None, "labels": LABELS,
            "tokens": [{"name": t["name"], "created": time_view(t["created_at"]),  # type: ignore[arg-type]
                        "used": time_view(t["last_used_at"]) if t["last_used_at"] else None} for t in tokens],  # type: ignore[arg-type]
            "settings_back": urlencode({"cursor": cursor}) if cursor else "",
        }

    async def save_rules(self, v: Visit) -> Response:
        assert v.form is not None
        values = rules_from_form(v.form)
        try:
            rules = forms.rules_in(values)
        except ApiError as exc:
            if v.wants_json:
                raise
            return await self._settings(v, values, exc.fields, 422)
        await run_in_threadpool(store.put_rules, v.service.db, rules, v.session.name, store.utcnow())
        return self.done(v, "/admin/settings", "Saved the moderation rules.", [], rules=rules.model_dump())

    async def set_page(self, v: Visit) -> Response:
        page = v.field("page") or ""
        closed = v.field("closed")
        if not 0 < len(page) <= 1024 or closed not in ("0", "1"):
            raise validation_error({"page": "must be 1 to 1024 characters", "closed": "must be 0 or 1"})
        result = await run_in_threadpool(store.set_closed, v.service.db, page, closed == "1", v.session.name,
                                         store.utcnow())
        verb = "Closed" if result["closed"] else "Opened"
        back = back_url(v.field("back"), "/admin/settings")
        return self.done(v, back, f"{verb} {page} {'to' if result['closed'] else 'for'} new comments.", [],
                         **result)

    # ---- plumbing ---------------------------------------------------------------------------

    def static(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        body, etag = self.assets[name], f'"{self.versions[name]}"'

        async def serve(request: Request) -> Response:
            headers = {"Cache-Control": "public, max-age=86400", "ETag": etag, "X-Content-Type-Options": "nosniff"}
            if etag in request.headers.get("if-none-match", ""):
                return Response(status_code=304, headers=headers)
            return Response(body, media_type=STATIC[name], headers=headers)

        return serve


_TITLES = {400: "That request was not understood", 401: "Please sign in", 403: "Refused",
           404: "Not found", 409: "Someone was quicker", 422: "Please check what you entered",
           429: "Too many attempts"}


async def _checked(call: Awaitable[Any], comment_id: int, seen: str | None) -> Any:
    """Await a store call about one comment; a missing or moved comment becomes a message naming it."""
    try:
        return await call
    except guarded.Moved as exc:
        where = LABELS.get(seen or "", "where you saw it")
        raise Refused(409, f"Comment #{comment_id} is no longer in {where}: someone else already moved it to "
                           f"{LABELS[exc.current]}. Nothing was changed.", current=exc.current, id=comment_id) from None
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f"Comment #{comment_id} does not exist (it may have been deleted for good). "
                           "Nothing was changed.") from None
        raise


def _publish_reply(service: Service, parent: int, expected: str | None, body: str, author: str,
                   actor: str) -> dict[str, Any]:
    """Sanitise the moderator's reply like any comment, then publish it as the site."""
    html = sanitize.render(body)
    reply = guarded.SiteReply(parent, expected, author, body, html, sanitize.POLICY_VERSION)
    return guarded.site_reply(service.db, reply, actor, store.utcnow())


def routes(settings: Settings) -> list[BaseRoute]:
    """The moderators' web page: /admin and below."""
    web = AdminWeb(settings)
    headers = sess.with_headers

    def guard(handler: sess.Handler, post: bool = False) -> sess.Endpoint:
        return sess.guard(handler, web.problem, post)

    return [
        route("/admin", GET=headers(guard(web.queue))),
        route("/admin/signin", GET=headers(web.signin_form), POST=headers(web.signin)),
        route("/admin/signout", POST=headers(guard(web.signout, post=True))),
        route("/admin/bulk", POST=headers(guard(web.bulk, post=True))),
        route("/admin/comments/{comment_id}", POST=headers(guard(web.act, post=True))),
        route("/admin/comments/{comment_id}/edit", POST=headers(guard(web.edit, post=True))),
        route("/admin/comments/{comment_id}/reply", POST=headers(guard(web.reply, post=True))),
        route("/admin/settings", GET=headers(guard(web.settings_page))),
        route("/admin/rules", POST=headers(guard(web.save_rules, post=True))),
        route("/admin/pages", POST=headers(guard(web.set_page, post=True))),
        *[route(f"/admin/static/{name}", GET=web.static(name)) for name in STATIC],
    ]
