"""The signed links in notification mail: one-click moderation, confirming and ending reply notices."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from ..security import Keys

ACTIONS = {"approve": "approved", "spam": "spam", "trash": "trash"}
MOD_PURPOSE = "mod-action"
CONFIRM_PURPOSE = "notify-confirm"
UNSUBSCRIBE_PURPOSE = "notify-unsubscribe"


class LinkProblem(Exception):
    """A link that cannot be used; the message says why, in words for the person who clicked."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _epoch(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def url(base: str, path: str, token: str) -> str:
    """An absolute link under the service's public address."""
    return f"{base.rstrip('/')}{path}?{urlencode({'t': token})}"


@dataclass(frozen=True)
class ModAction:
    """What a one-click moderation link does, for whom, until when."""

    comment_id: int
    action: str
    target: str
    expires: datetime
    digest: str

    @property
    def status(self) -> str:
        return ACTIONS[self.action]

    @property
    def actor(self) -> str:
        """How the audit log names the moderator who clicked: never the address itself."""
        return "mail:" + self.target[:12]


def mod_action(keys: Keys, comment_id: int, action: str, target: str, now: datetime, hours: int) -> str:
    """A token for one action on one comment by one moderator; it works once, until it expires."""
    if action not in ACTIONS:
        raise ValueError(action)
    expires = _epoch(now + timedelta(hours=hours))
    return keys.sign(MOD_PURPOSE, [comment_id, action, target, expires, secrets.token_urlsafe(6)])


def read_mod_action(keys: Keys, token: str | None, now: datetime) -> ModAction:
    """The action a token names, or LinkProblem (bad: 400, expired: 410)."""
    try:
        comment_id, action, target, expires, _nonce = keys.unsign_fields(MOD_PURPOSE, token or "", 5)
        if not (isinstance(comment_id, int) and action in ACTIONS and isinstance(target, str)
                and isinstance(expires, int)):
            raise ValueError
    except (ValueError, TypeError):
        raise LinkProblem("This link is not one this service made, or it was cut short.") from None
    moment = datetime(1970, 1, 1) + timedelta(seconds=expires)
    if moment <= now:
        raise LinkProblem("This link has expired. Use the moderation page instead.", 410)
    digest = hashlib.sha256(str(token).encode()).hexdigest()
    return ModAction(comment_id, action, target, moment, digest)


def confirm_token(keys: Keys, subscription_id: int, stamp: int, now: datetime, hours: int) -> str:
    return keys.sign(CONFIRM_PURPOSE, [subscription_id, stamp, _epoch(now + timedelta(hours=hours))])


def read_confirm(keys: Keys, token: str | None, now: datetime) -> tuple[int, int]:
    """(subscription id, its stamp) from a confirmation link, or LinkProblem."""
    try:
        subscription_id, stamp, expires = keys.unsign_fields(CONFIRM_PURPOSE, token or "", 3)
        if not (isinstance(subscription_id, int) and isinstance(stamp, int) and isinstance(expires, int)):
            raise ValueError
    except (ValueError, TypeError):
        raise LinkProblem("This link is not one this service made, or it was cut short.") from None
    if datetime(1970, 1, 1) + timedelta(seconds=expires) <= now:
        raise LinkProblem("This confirmation link has expired. Tick the box again with your next comment.", 410)
    return subscription_id, stamp


def unsubscribe_token(keys: Keys, subscription_id: int, stamp: int) -> str:
    """An unsubscribe token: it does not expire (it must work from any old mail)."""
    return keys.sign(UNSUBSCRIBE_PURPOSE, [subscription_id, stamp])


def read_unsubscribe(keys: Keys, token: str | None) -> tuple[int, int]:
    try:
        subscription_id, stamp = keys.unsign_fields(UNSUBSCRIBE_PURPOSE, token or "", 2)
        if not (isinstance(subscription_id, int) and isinstance(stamp, int)):
            raise ValueError
    except (ValueError, TypeError):
        raise LinkProblem("This link is not one this service made, or it was cut short.") from None
    return subscription_id, stamp
