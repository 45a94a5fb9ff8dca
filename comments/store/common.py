"""What every store module shares: table handles, time formatting, dialect-aware upserts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..db import Database

from ..models import Comment, ModerationAction, ModerationRules, ModeratorToken, Page, RateEvent, Secret

page_t: sa.Table = Page.__table__  # type: ignore[attr-defined]
comment_t: sa.Table = Comment.__table__  # type: ignore[attr-defined]
rules_t: sa.Table = ModerationRules.__table__  # type: ignore[attr-defined]
token_t: sa.Table = ModeratorToken.__table__  # type: ignore[attr-defined]
action_t: sa.Table = ModerationAction.__table__  # type: ignore[attr-defined]
rate_t: sa.Table = RateEvent.__table__  # type: ignore[attr-defined]
secret_t: sa.Table = Secret.__table__  # type: ignore[attr-defined]


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (as the database stores it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def rfc3339(moment: datetime) -> str:
    """2026-11-29T18:37:04Z"""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def insert_ignore(
    conn: Connection, table: sa.Table, values: dict[str, Any] | list[dict[str, Any]], key: list[str]
) -> None:
    """INSERT that does nothing when a row with the same unique key exists (given a list of
    rows, one executemany that does so for each)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    if isinstance(values, list):
        conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=key), values)
        return
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=key)
    conn.execute(stmt)


def record(
    conn: Connection,
    now: datetime,
    actor: str,
    action: str,
    comment_id: int | None = None,
    from_value: str | None = None,
    to_value: str | None = None,
) -> None:
    """Append one row to the moderation record."""
    conn.execute(
        action_t.insert().values(
            created_at=now, actor=actor, action=action, comment_id=comment_id,
            from_value=from_value, to_value=to_value,
        )
    )


def reveal(db: Database, stored: str) -> str:
    """A stored (encrypted) address in clear, for moderators only."""
    from ..crypto import KeyProblem

    try:
        return db.keyring().decrypt(stored)
    except KeyProblem:
        return db.refresh_keyring().decrypt(stored)  # a key added since this process read the file


_BUMP = page_t.update().where(page_t.c.id == sa.bindparam("bumped")).values(
    thread_version=page_t.c.thread_version + 1)


def bump_thread(conn: Connection, page_id: int) -> None:
    """The public view of this page changed: move its ETag and drop cached copies."""
    conn.execute(_BUMP, {"bumped": page_id})
