"""The sign-in page of the moderators' web page: the form, exchanging a token for a session, signing out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import adminsession as sess
from . import store
from .adminguard import CROSS_SITE, Visit, client_address, cross_site, is_https, next_url, read_form, service_of
from .errors import ApiError

if TYPE_CHECKING:
    from .adminweb import AdminWeb


class SignInPage:
    """The handlers of /admin/signin and /admin/signout, rendering through the shared page."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def form(self, request: Request) -> Response:
        """The sign-in form, saying why the last session ended; a live session goes straight to the queue."""
        service = service_of(request)
        session, _ = await run_in_threadpool(sess.load, service.db, service.keys,
                                             request.cookies.get(sess.COOKIE), store.utcnow())
        if session is not None:
            return RedirectResponse("/admin", status_code=303)
        ended = request.query_params.get("ended", "")
        return self.web.render("admin_signin.html", {"notice": sess.ENDED.get(ended), "error": None,
                                                     "next": next_url(request.query_params.get("next"))})

    async def sign_in(self, request: Request) -> Response:
        """Exchange the posted token for a session cookie, or show the form again saying why not."""
        service = service_of(request)
        secure = is_https(request, service.settings)
        if cross_site(request):
            return self._refused(CROSS_SITE, "/admin", 403)
        try:
            form = await read_form(request)
        except ApiError as exc:
            return self._refused(exc.message, "/admin", exc.status)
        token = form.get("token")
        after = next_url(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
        result = await run_in_threadpool(sess.sign_in, service.db, service.keys,
                                         token if isinstance(token, str) else "",
                                         client_address(request, service.settings), store.utcnow())
        if result.retry_after:
            minutes = -(-result.retry_after // 60)
            error = (f"Too many failed sign-ins from your address. Try again in {minutes} "
                     f"minute{'s' if minutes != 1 else ''}.")
            response = self._refused(error, after, 429)
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        if result.session is None:
            return self._refused("That token was not accepted.", after, 401)
        redirect = RedirectResponse(after, status_code=303)
        sess.set_session_cookie(redirect, sess.encode(service.keys, result.session), secure)
        return redirect

    async def sign_out(self, v: Visit) -> Response:
        """End the session: drop its cookie and say so on the sign-in page."""
        v.keep_session = False
        response = RedirectResponse("/admin/signin?ended=signed-out", status_code=303)
        sess.clear_session_cookie(response, v.secure)
        return response

    def _refused(self, error: str, after: str, status: int) -> Response:
        return self.web.render("admin_signin.html", {"notice": None, "error": error, "next": after}, status)
