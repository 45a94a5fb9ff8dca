"""Reading public threads: the nested thread of a page, one comment, counts per page."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..models import Status
from .common import comment_t, page_t

APPROVED = Status.approved.value

_THREAD_COLUMNS = (
    comment_t.c.id, comment_t.c.parent_id, comment_t.c.author, comment_t.c.url,
    comment_t.c.body_html, comment_t.c.created_at,
)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# Built once: every thread read and revalidation starts with this lookup.
_VERSION = sa.select(page_t.c.thread_version).where(page_t.c.key_hash == sa.bindparam("key_hash"))


def thread_version(db: Database, page_key: str) -> int:
    """The page's public version (0 for a page nobody has commented on)."""
    with db.engine.connect() as conn:  # one SELECT: no explicit transaction needed
        version = conn.execute(_VERSION, {"key_hash": _key_hash(page_key)}).scalar()
    return int(version or 0)


def effective_parent(conn: Connection, parent_id: int | None) -> int | None:
    """The nearest approved ancestor, starting at parent_id."""
    seen = set()
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        row = conn.execute(
            sa.select(comment_t.c.parent_id, comment_t.c.status).where(comment_t.c.id == parent_id)
        ).first()
        if row is None:
            return None
        if row.status == APPROVED:
            return parent_id
        parent_id = row.parent_id
    return None


@dataclass(frozen=True)
class Thread:
    """One page of a thread: its version, whether it is closed, the approved total and the comments."""

    version: int
    closed: bool
    total: int
    comments: list[dict[str, Any]]
    last: tuple[datetime, int] | None  # key of the last top-level comment, if more follow


def read_thread(db: Database, page_key: str, limit: int, after: tuple[datetime, int] | None) -> Thread:
    """The approved comments of a page, top-level ones paged, replies nested under their nearest approved ancestor."""
    with db.read() as conn:
        page = conn.execute(
            sa.select(page_t.c.id, page_t.c.thread_version, page_t.c.closed)
            .where(page_t.c.key_hash == _key_hash(page_key))
        ).first()
        if page is None:
            return Thread(0, False, 0, [], None)
        rows = conn.execute(
            sa.select(*_THREAD_COLUMNS)
            .where(comment_t.c.page_id == page.id, comment_t.c.status == APPROVED)
            .order_by(comment_t.c.created_at, comment_t.c.id)
        ).all()
        approved = {row.id for row in rows}
        hidden: dict[int, int | None] = {}
        if any(row.parent_id is not None and row.parent_id not in approved for row in rows):
            hidden = {
                row.id: row.parent_id
                for row in conn.execute(
                    sa.select(comment_t.c.id, comment_t.c.parent_id).where(
                        comment_t.c.page_id == page.id, comment_t.c.status != APPROVED
                    )
                )
            }
    comments, last = _nest(rows, approved, hidden, limit, after)
    return Thread(page.thread_version, bool(page.closed), len(rows), comments, last)


def _nest(
    rows: Sequence[Any], approved: set[int], hidden: dict[int, int | None], limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[list[dict[str, Any]], tuple[datetime, int] | None]:
    def lift(parent: int | None) -> int | None:
        seen: set[int] = set()
        while parent is not None and parent not in approved and parent not in seen:
            seen.add(parent)
            parent = hidden.get(parent)
        return parent if parent in approved else None

    top: list[dict[str, Any]] = []
    children: dict[int, list[dict[str, Any]]] = {}
    keys: dict[int, tuple[datetime, int]] = {}
    for row in rows:
        parent = lift(row.parent_id)
        item = {
            "id": row.id, "parent": parent, "author": row.author, "url": row.url,
            "body_html": row.body_html, "created_at": row.created_at, "replies": [],
        }
        if parent is None:
            if after is None or (row.created_at, row.id) > after:
                top.append(item)
                keys[row.id] = (row.created_at, row.id)
        else:
            children.setdefault(parent, []).append(item)
    more = len(top) > limit
    top = top[:limit]
    stack = list(top)
    while stack:
        item = stack.pop()
        item["replies"] = children.get(item["id"], [])
        stack.extend(item["replies"])
    return top, (keys[top[-1]["id"]] if more else None)


def public_comment(db: Database, comment_id: int) -> dict[str, Any] | None:
    """One approved comment with its effective parent, or None."""
    with db.read() as conn:
        row = conn.execute(
            sa.select(*_THREAD_COLUMNS).where(comment_t.c.id == comment_id, comment_t.c.status == APPROVED)
        ).first()
        if row is None:
            return None
        return {
            "id": row.id, "parent": effective_parent(conn, row.parent_id), "author": row.author,
            "url": row.url, "body_html": row.body_html, "created_at": row.created_at,
        }


def counts(db: Database, page_keys: Sequence[str]) -> dict[str, int]:
    """Approved comments per page key (0 for unknown pages)."""
    hashes = {_key_hash(k): k for k in page_keys}
    result = dict.fromkeys(page_keys, 0)
    if not hashes:
        return result
    with db.read() as conn:
        rows = conn.execute(
            sa.select(page_t.c.key_hash, sa.func.count(comment_t.c.id))
            .select_from(page_t.join(comment_t, comment_t.c.page_id == page_t.c.id))
            .where(page_t.c.key_hash.in_(list(hashes)), comment_t.c.status == APPROVED)
            .group_by(page_t.c.key_hash)
        ).all()
    for digest, number in rows:
        result[hashes[digest]] = int(number)
    return result
