"""The guard every /admin page and action runs behind: the Visit it hands a handler, the posted form,
the cross-site and CSRF checks, the security headers, and the page's own URLs."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import forms, store
from .adminsession import (COOKIE, ENDED, Session, clear_session_cookie, csrf_ok, csrf_token, encode, load,
                          set_session_cookie)
from .errors import ApiError, error_response
from .security import client_ip
from .service import Service
from .settings import Settings

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # the pages show email addresses
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CROSS_SITE = "This request came from another site, so it was refused. Nothing was changed."
BAD_CSRF = ("This form is out of date or did not come from this page (its security token is missing or wrong). "
            "Nothing was changed. Reload the page and try again.")
MAX_FIELDS = 1020  # a bulk action on up to 1000 comments, and the form's own fields
VIEWS = ("/admin", "/admin/settings")
BACK_KEYS = ("status", "page", "q", "cursor", "limit")


class Refused(ApiError):
    """An ApiError whose JSON answer carries more than the message (for admin.js)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(status, message)
        self.extra = extra


@dataclass
class Visit:
    """One request of a signed-in moderator: the posted form (for POST), and what the answer needs."""

    request: Request
    service: Service
    session: Session
    csrf: str
    form: FormData | None
    wants_json: bool
    secure: bool
    keep_session: bool = True

    def field(self, name: str) -> str | None:
        """One posted field as text (None when it was not posted, or was a file)."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else None


class Problem(Protocol):
    """How the page answers an error: JSON for admin.js, else a page saying nothing changed."""

    def __call__(self, v: Visit | None, status: int, message: str, fields: dict[str, str] | None = None,
                 back: str = "/admin", **extra: Any) -> Response: ...


Handler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def service_of(request: Request) -> Service:
    """The service the app keeps on its state."""
    return request.app.state.service


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the moderator reached us over HTTPS (directly, or through a trusted proxy that says so)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https" and peer is not None and _trusted(peer, settings)


def _trusted(peer: str, settings: Settings) -> bool:
    try:
        address = ipaddress.ip_address(peer.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in settings.trusted_proxies)


def client_address(request: Request, settings: Settings) -> str | None:
    """The moderator's address, as far as the trusted proxies vouch for it."""
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)


def wants_json(request: Request) -> bool:
    """admin.js asks for JSON; a plain form post gets a page or a redirect."""
    return "application/json" in request.headers.get("accept", "")


def cross_site(request: Request) -> bool:
    """Whether the browser says the request came from another site."""
    return request.headers.get("sec-fetch-site") == "cross-site"


def list_url(base: str = "/admin", **params: Any) -> str:
    """A URL of this page with the given query parameters (empty ones left out)."""
    pairs = {k: v for k, v in params.items() if v not in (None, "")}
    return base + ("?" + urlencode(pairs) if pairs else "")


def back_url(value: str | None, base: str = "/admin") -> str:
    """A view of this page from a posted `back` query string: known keys only, never another site."""
    pairs = [(k, v) for k, v in parse_qsl(value or "", keep_blank_values=False)[:10] if k in BACK_KEYS]
    return base + ("?" + urlencode(pairs) if pairs else "")


def next_url(value: str | None) -> str:
    """Where to go after signing in: one of this page's own views (with its filters), else the queue."""
    parts = urlsplit(value or "")
    if parts.scheme or parts.netloc or parts.path not in VIEWS:
        return "/admin"
    return back_url(parts.query, parts.path)


def signin_url(request: Request, ended: str | None, post: bool) -> str:
    """The sign-in page, saying why the session ended and (for a view) where to come back to."""
    back = None
    if not post and request.url.path in VIEWS and request.url.query:
        back = next_url(f"{request.url.path}?{request.url.query}")
    return list_url("/admin/signin", ended=ended, next=back)


async def read_form(request: Request) -> FormData:
    """The posted form; nothing posted is an empty form (which the CSRF check then refuses)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type:
        return FormData()
    if content_type not in forms.FORM_TYPES:
        raise ApiError(415, "send the page's form (application/x-www-form-urlencoded or multipart/form-data)")
    try:
        return await request.form(max_files=0, max_fields=MAX_FIELDS)
    except Exception:  # python-multipart raises several types for broken bodies
        raise ApiError(400, "the form body cannot be parsed") from None


def guard(handler: Handler, problem: Problem, post: bool = False) -> Endpoint:
    """Run handler for a signed-in moderator (for POST: from this site, with the session's CSRF token);
    slide the session on; turn errors into problem() answers."""

    async def endpoint(request: Request) -> Response:
        service = service_of(request)
        secure = is_https(request, service.settings)
        if post and cross_site(request):
            return problem(None, 403, CROSS_SITE)
        session, ended = await run_in_threadpool(load, service.db, service.keys, request.cookies.get(COOKIE),
                                                 store.utcnow())
        if session is None:
            message = ENDED.get(ended or "", "Sign in first.") + (" Nothing was changed." if post else "")
            response: Response = (error_response(401, "unauthorized", message) if wants_json(request)
                                  else RedirectResponse(signin_url(request, ended, post), status_code=303))
            if ended:
                clear_session_cookie(response, secure)
            return response
        visit = Visit(request, service, session, csrf_token(service.keys, session), None, wants_json(request), secure)
        try:
            if post:
                visit.form = await read_form(request)
                if not csrf_ok(service.keys, session, visit.field("csrf") or request.headers.get("x-csrf-token")):
                    return problem(visit, 403, BAD_CSRF)
            response = await handler(visit)
        except ApiError as exc:
            response = problem(visit, exc.status, exc.message, exc.fields, back=back_url(visit.field("back")),
                               **getattr(exc, "extra", {}))
            response.headers.update(exc.headers)
        if visit.keep_session:
            set_session_cookie(response, encode(service.keys, session), secure)
        return response

    return endpoint


def with_headers(handler: Endpoint) -> Endpoint:
    """Every answer under /admin: strict CSP, no framing, no referrer, no caching."""

    async def endpoint(request: Request) -> Response:
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    return endpoint
