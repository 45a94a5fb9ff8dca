"""The moderators' web session: a signed, sliding cookie bound to a moderator token, its CSRF token,
the one-shot flash message, the limit on failed sign-ins, and the guard every /admin handler runs behind."""

from __future__ import annotations

import calendar
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import forms, store
from .db import Database
from .errors import ApiError, error_response
from .security import Keys, client_ip, token_hash
from .service import Service
from .settings import Settings
from .store import logins
from .store.tokens import token_by_hash, token_by_id

# The session ends after this much inactivity, and in any case this long after signing in.
SESSION_MINUTES = 30
SESSION_MAX_HOURS = 12
# At most this many failed sign-ins per client address in the window; then every sign-in
# from that address (even with a good token) waits.
LOGIN_LIMIT = 5
LOGIN_WINDOW_SECONDS = 900

COOKIE = "comments_admin"
FLASH_COOKIE = "comments_admin_flash"
PATH = "/admin"
_SESSION = "admin-session"
_FLASH = "admin-flash"

#: Why there is no session: shown on the sign-in page (the keys are the `ended` query values).
ENDED = {
    "expired": "Your session ended after a while without activity. Sign in again.",
    "revoked": "The token behind your session was revoked. Sign in with a valid token.",
    "invalid": "Your session cookie was not valid. Sign in again.",
    "signed-out": "You are signed out.",
}


def epoch(moment: datetime) -> int:
    """Seconds since 1970 of a naive UTC datetime."""
    return calendar.timegm(moment.utctimetuple())


@dataclass(frozen=True)
class Session:
    """One signed-in moderator: which token (id and hash prefix), since when, last active when."""

    token_id: int
    digest: str
    nonce: str
    issued: int
    active: int
    name: str = ""


def new_session(token: dict[str, Any], now: datetime) -> Session:
    moment = epoch(now)
    return Session(int(token["id"]), str(token["token_hash"])[:16], secrets.token_urlsafe(12), moment, moment,
                   str(token["name"]))


def encode(keys: Keys, session: Session) -> str:
    """The cookie's value: the session, signed (not secret: it holds no credential)."""
    return keys.sign(_SESSION, [session.token_id, session.digest, session.nonce, session.issued, session.active])


def decode(keys: Keys, value: str | None) -> Session | None:
    """The session in a cookie made by encode(), or None for anything else."""
    if not value:
        return None
    try:
        data = keys.unsign(_SESSION, value)
    except ValueError:
        return None
    if not (isinstance(data, list) and len(data) == 5 and isinstance(data[0], int)
            and all(isinstance(x, str) for x in data[1:3]) and all(isinstance(x, int) for x in data[3:])):
        return None
    return Session(data[0], data[1], data[2], data[3], data[4])


def timed_out(session: Session, now: datetime) -> bool:
    moment = epoch(now)
    return (moment - session.active > SESSION_MINUTES * 60
            or moment - session.issued > SESSION_MAX_HOURS * 3600)


def load(db: Database, keys: Keys, value: str | None, now: datetime) -> tuple[Session | None, str | None]:
    """(the live session with the moderator's name and a fresh activity time, None) or
    (None, why: a key of ENDED, or None when there was no cookie at all)."""
    if not value:
        return None, None
    session = decode(keys, value)
    if session is None or session.active > epoch(now) + 60:
        return None, "invalid"
    if timed_out(session, now):
        return None, "expired"
    token = token_by_id(db, session.token_id, now)
    if token is None or not hmac.compare_digest(str(token["token_hash"])[:16], session.digest):
        return None, "revoked"
    return replace(session, name=str(token["name"]), active=epoch(now)), None


def csrf_token(keys: Keys, session: Session) -> str:
    """The session's CSRF token: a keyed hash of its nonce, the same for the whole session."""
    return keys.lookup("admin-csrf", f"{session.token_id}:{session.nonce}")


def csrf_ok(keys: Keys, session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(keys, session), str(given))


@dataclass(frozen=True)
class SignIn:
    """What a sign-in attempt came to: a session, or a wait (seconds), or neither (refused)."""

    session: Session | None = None
    retry_after: int = 0


def sign_in(db: Database, keys: Keys, token: str, address: str | None, now: datetime) -> SignIn:
    """Exchange a moderator token for a session; failures are counted per client address."""
    key = logins.login_key(keys.lookup("ip", address or "unknown"))
    wait = logins.login_retry_after(db, key, LOGIN_LIMIT, now)
    if wait:
        return SignIn(retry_after=wait)
    token = token.strip()
    found = token_by_hash(db, token_hash(token), now) if 0 < len(token) <= 200 else None
    if found is None:
        logins.record_login_failure(db, key, LOGIN_WINDOW_SECONDS, now)
        return SignIn()
    return SignIn(session=new_session(found, now))


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
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)


def set_session_cookie(response: Response, value: str, secure: bool) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_MINUTES * 60, path=PATH, secure=secure,
                        httponly=True, samesite="strict")


def clear_session_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=secure, httponly=True, samesite="strict")


def set_flash(response: Response, keys: Keys, flash: dict[str, Any], secure: bool) -> None:
    """A message for the next page (after a plain form post), with what Undo would post."""
    response.set_cookie(FLASH_COOKIE, keys.sign(_FLASH, flash), max_age=120,
                        path=PATH, secure=secure, httponly=True, samesite="strict")


def take_flash(request: Request, keys: Keys) -> dict[str, Any] | None:
    """The flash left by the previous answer, if any (the caller clears the cookie)."""
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        data = keys.unsign(_FLASH, value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def clear_flash(response: Response, secure: bool) -> None:
    response.delete_cookie(FLASH_COOKIE, path=PATH, secure=secure, httponly=True, samesite="strict")


# ---- the guard: every /admin page and action runs behind it ---------------------------------

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
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else None


class Problem(Protocol):
    def __call__(self, v: Visit | None, status: int, message: str, fields: dict[str, str] | None = None,
                 back: str = "/admin", **extra: Any) -> Response: ...


Handler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def wants_json(request: Request) -> bool:
    """admin.js asks for JSON; a plain form post gets a page or a redirect."""
    return "application/json" in request.headers.get("accept", "")


def cross_site(request: Request) -> bool:
    return request.headers.get("sec-fetch-site") == "cross-site"


def list_url(base: str = "/admin", **params: Any) -> str:
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
