"""The moderators' web page at /admin: its templates, static files and answers, and its routes."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from . import adminguard
from . import adminsession as sess
from .adminqueue import QueuePage
from .adminguard import Visit
from .adminsettings import SettingsPage
from .adminsignin import SignInPage
from .errors import STATUS_CODES
from .http import json_response, route
from .settings import Settings

HERE = Path(__file__).parent
STATIC = {"admin.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8"}


class AdminWeb:
    """The page's templates and static files, and the answers every part of the page gives with them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.assets = {name: (HERE / "static" / name).read_bytes() for name in STATIC}
        self.versions = {name: hashlib.sha256(body).hexdigest()[:16] for name, body in self.assets.items()}

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        """A template as a whole page, with the versioned script and stylesheet (and no moderator unless given)."""
        page = {"js": f"/admin/static/admin.js?v={self.versions['admin.js']}",
                "css": f"/admin/static/admin.css?v={self.versions['admin.css']}",
                "moderator": None, "csrf": "", "section": "", "tab": "", **context}
        return HTMLResponse(self.env.get_template(name).render(page), status_code=status)

    def page(self, v: Visit, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        """A template as a page for the signed-in moderator (their name, and the CSRF token for its forms)."""
        return self.render(name, {"moderator": v.session.name, "csrf": v.csrf, **context}, code)

    def page_with_flash(self, v: Visit, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        """A page that shows the message the last action left (once: its cookie is cleared)."""
        flash = sess.take_flash(v.request, v.service.keys)
        response = self.page(v, name, code, flash=flash, **context)
        if v.request.cookies.get(sess.FLASH_COOKIE):
            sess.clear_flash(response, v.secure)
        return response

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

    def static(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint serving one static file, cached for a day and revalidated by its ETag."""
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


def routes(settings: Settings) -> list[BaseRoute]:
    """The moderators' web page: /admin and below."""
    web = AdminWeb(settings)
    queue, signin, options = QueuePage(web), SignInPage(web), SettingsPage(web)
    headers = adminguard.with_headers

    def guard(handler: adminguard.Handler, post: bool = False) -> adminguard.Endpoint:
        return adminguard.guard(handler, web.problem, post)

    return [
        route("/admin", GET=headers(guard(queue.show))),
        route("/admin/signin", GET=headers(signin.form), POST=headers(signin.sign_in)),
        route("/admin/signout", POST=headers(guard(signin.sign_out, post=True))),
        route("/admin/bulk", POST=headers(guard(queue.bulk, post=True))),
        route("/admin/comments/{comment_id}", POST=headers(guard(queue.act, post=True))),
        route("/admin/comments/{comment_id}/edit", POST=headers(guard(queue.edit, post=True))),
        route("/admin/comments/{comment_id}/reply", POST=headers(guard(queue.reply, post=True))),
        route("/admin/settings", GET=headers(guard(options.show))),
        route("/admin/rules", POST=headers(guard(options.save_rules, post=True))),
        route("/admin/pages", POST=headers(guard(options.set_page, post=True))),
        *[route(f"/admin/static/{name}", GET=web.static(name)) for name in STATIC],
    ]
