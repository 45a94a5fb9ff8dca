"""The moderators' session cookie: signed, sliding and bound to a moderator token, with its CSRF token,
the one-shot flash cookie beside it, and signing in (with its limit on failed attempts) to get one."""

from __future__ import annotations

import calendar
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .db import Database
from .security import Keys, token_hash
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
    """A fresh session for a moderator token's row, issued and active now."""
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
    """Whether the session has been idle too long, or has lived too long since signing in."""
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
    """Whether the given CSRF token is the session's own."""
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


def set_session_cookie(response: Response, value: str, secure: bool) -> None:
    """Give the browser the session cookie (an encode() value), good for SESSION_MINUTES from now."""
    response.set_cookie(COOKIE, value, max_age=SESSION_MINUTES * 60, path=PATH, secure=secure,
                        httponly=True, samesite="strict")


def clear_session_cookie(response: Response, secure: bool) -> None:
    """Tell the browser to drop the session cookie."""
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
    """Tell the browser to drop the flash cookie (once its page has shown it)."""
    response.delete_cookie(FLASH_COOKIE, path=PATH, secure=secure, httponly=True, samesite="strict")
