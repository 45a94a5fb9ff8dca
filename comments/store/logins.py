"""Failed sign-ins to the moderators' web page, counted per client address in the rate_event table."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..db import Database
from .common import rate_t

# A failed sign-in is kept as a rate_event row whose created_at is the moment it STOPS
# counting (failure time + window). The purge of old rate events deletes rows by age
# (created_at older than a minute or so), so a row dated in the future survives for the
# whole window without any change to that purge.
PREFIX = "login:"


def login_key(address_key: str) -> str:
    """The rate_event key for failed sign-ins from one (keyed-hashed) client address."""
    return PREFIX + address_key[:60]


def login_retry_after(db: Database, key: str, limit: int, now: datetime) -> int:
    """0 while this key has fewer than limit failures that still count, else the seconds to wait."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(rate_t.c.created_at)
            .where(rate_t.c.key == key, rate_t.c.created_at > now)
            .order_by(rate_t.c.created_at.desc())
            .limit(limit)
        ).all()
    if len(rows) < limit:
        return 0
    return max(1, math.ceil((rows[-1].created_at - now).total_seconds()))


def record_login_failure(db: Database, key: str, window_seconds: int, now: datetime) -> None:
    """Count one failed sign-in for window_seconds from now."""
    with db.write() as conn:
        conn.execute(rate_t.insert().values(key=key, created_at=now + timedelta(seconds=window_seconds)))
