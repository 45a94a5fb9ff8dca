"""The audit log: every moderator action, read back with filters, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..db import Database
from .common import action_t


def read_audit(
    db: Database, *, actor: str | None = None, action: str | None = None, comment_id: int | None = None,
    since: datetime | None = None, until: datetime | None = None, limit: int = 50, before_id: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """(rows, id to continue before if more follow)."""
    where = []
    if actor is not None:
        where.append(action_t.c.actor == actor)
    if action is not None:
        where.append(action_t.c.action == action)
    if comment_id is not None:
        where.append(action_t.c.comment_id == comment_id)
    if since is not None:
        where.append(action_t.c.created_at >= since)
    if until is not None:
        where.append(action_t.c.created_at < until)
    if before_id is not None:
        where.append(action_t.c.id < before_id)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(action_t.c.id, action_t.c.created_at, action_t.c.actor, action_t.c.action,
                      action_t.c.comment_id, action_t.c.from_value.label("from"), action_t.c.to_value.label("to"))
            .where(*where).order_by(action_t.c.id.desc()).limit(limit + 1)
        ).all()
    items = [row._asdict() for row in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)
