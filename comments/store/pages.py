"""Pages for moderators: the list with counts per status, and closing or opening one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..db import Database
from ..models import STATUSES
from .comments import ensure_page, page_row
from .common import comment_t, page_t, record


def list_pages(db: Database, limit: int, after: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """Pages in the order they first got a comment, with counts per status."""
    with db.read() as conn:
        stmt = sa.select(page_t.c.id, page_t.c.key, page_t.c.closed).order_by(page_t.c.id).limit(limit + 1)
        if after is not None:
            stmt = stmt.where(page_t.c.id > after)
        rows = conn.execute(stmt).all()
        shown = rows[:limit]
        counts: dict[int, dict[str, int]] = {r.id: dict.fromkeys(STATUSES, 0) for r in shown}
        if shown:
            for page_id, status, number in conn.execute(
                sa.select(comment_t.c.page_id, comment_t.c.status, sa.func.count())
                .where(comment_t.c.page_id.in_(list(counts)))
                .group_by(comment_t.c.page_id, comment_t.c.status)
            ).all():
                if status in counts[page_id]:
                    counts[page_id][status] = int(number)
    items = [{"page": r.key, "closed": bool(r.closed), "counts": counts[r.id]} for r in shown]
    return items, (shown[-1].id if len(rows) > limit else None)


def set_closed(db: Database, key: str, closed: bool, actor: str, now: datetime) -> dict[str, Any]:
    """Close a page to new comments, or open it again (a page can be closed before its first comment)."""
    with db.write() as conn:
        page = page_row(conn, key) or ensure_page(conn, key, now)
        if bool(page.closed) != closed:
            conn.execute(page_t.update().where(page_t.c.id == page.id).values(
                closed=closed, thread_version=page_t.c.thread_version + 1))
            record(conn, now, actor, "close" if closed else "open", None, key, str(closed).lower())
        found = {s: 0 for s in STATUSES}
        for status, number in conn.execute(
            sa.select(comment_t.c.status, sa.func.count()).where(comment_t.c.page_id == page.id)
            .group_by(comment_t.c.status)
        ).all():
            found[status] = int(number)
    return {"page": key, "closed": closed, "counts": found}
