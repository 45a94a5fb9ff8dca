"""Writing imported comments in batches: idempotent by origin, parents linked where they can be."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..security import anonymise_ip
from .comments import body_hash, email_lookups, ensure_page, url_host
from .common import bump_thread, comment_t, record


def origin_key(origin: str, source: str, origin_id: str) -> str:
    """The stable identity of a comment from another system (kept so a second import changes nothing)."""
    return hashlib.sha256(f"{origin}\0{source}\0{origin_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """An imported comment, checked and rendered, ready to be written."""

    key: str
    parent_key: str | None
    page: str
    status: str
    created_at: datetime
    author: str
    email: str
    url: str | None
    ip: str | None
    user_agent: str | None
    body: str
    body_html: str
    policy_version: int


def present(db: Database, keys: list[str]) -> set[str]:
    """Which of these origin keys are already in the database."""
    if not keys:
        return set()
    with db.read() as conn:
        return set(conn.execute(sa.select(comment_t.c.origin_key).where(comment_t.c.origin_key.in_(keys))).scalars())


def write_batch(db: Database, batch: list[Prepared], pages: dict[str, int], now: datetime) -> tuple[int, int]:
    """Insert the comments not yet present, in one transaction: (imported, already present)."""
    if not batch:
        return 0, 0
    ring = db.keyring()
    keep_days = db.settings.ip_retention_days
    with db.write() as conn:
        existing = set(conn.execute(sa.select(comment_t.c.origin_key).where(
            comment_t.c.origin_key.in_([p.key for p in batch]))).scalars())
        rows: list[dict[str, Any]] = []
        touched: set[int] = set()
        seen: set[str] = set()
        for item in batch:
            if item.key in existing or item.key in seen:
                continue
            seen.add(item.key)
            page_id = pages.get(item.page)
            if page_id is None:
                page_id = pages[item.page] = ensure_page(conn, item.page, now).id
            if item.status == "approved":
                touched.add(page_id)
            rows.append(_row(db, ring, item, page_id, keep_days, now))
        if rows:
            conn.execute(comment_t.insert(), rows)
            link_parents(conn)
            for page_id in touched:
                bump_thread(conn, page_id)
    return len(rows), len(batch) - len(rows)


def _row(db: Database, ring: Any, item: Prepared, page_id: int, keep_days: int, now: datetime) -> dict[str, Any]:
    personal_until = item.created_at + timedelta(days=keep_days) if keep_days and item.ip else None
    return {
        "page_id": page_id, "parent_id": None, "status": item.status, "author": item.author,
        "email": ring.encrypt(item.email) if item.email else "",
        "email_key": email_lookups(db, item.email)[0] if item.email else "",
        "url": item.url, "url_host": url_host(item.url), "body": item.body, "body_html": item.body_html,
        "body_hash": body_hash(item.body), "policy_version": item.policy_version,
        "ip": item.ip if keep_days else anonymise_ip(item.ip), "ip_key": None, "personal_until": personal_until,
        "user_agent": item.user_agent if keep_days else None, "spam_score": 0.0, "spam_reasons": [],
        "created_at": item.created_at, "updated_at": now, "origin_key": item.key,
        "origin_parent_key": item.parent_key,
    }


def link_parents(conn: Connection) -> int:
    """Link every imported comment whose parent has arrived (earlier in the file or in the database)
    on the same page: a parent on another page is no parent (finish() makes such replies top level)."""
    parent = comment_t.alias("parent")
    found = (sa.select(parent.c.id).where(parent.c.origin_key == comment_t.c.origin_parent_key,
                                          parent.c.page_id == comment_t.c.page_id)
             .scalar_subquery())
    return int(conn.execute(
        comment_t.update()
        .where(comment_t.c.origin_parent_key.is_not(None), sa.exists(found))
        .values(parent_id=found, origin_parent_key=None)
    ).rowcount)


def orphans(db: Database) -> int:
    """Imported replies waiting at the top level for a parent no import has brought yet."""
    with db.read() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(comment_t).where(comment_t.c.origin_parent_key.is_not(None))
        ).scalar_one())


def finish(db: Database, actor: str, summary: str, now: datetime, waiting_before: int = 0) -> int:
    """After the last batch: replies whose parent is still missing stay at the top level, counted
    as re-parented; they keep their parent's origin, so a later import that brings it links them.
    The import is recorded in the audit log."""
    with db.write() as conn:
        link_parents(conn)
        waiting = int(conn.execute(
            sa.select(sa.func.count()).select_from(comment_t).where(comment_t.c.origin_parent_key.is_not(None))
        ).scalar_one())
        added = max(0, waiting - waiting_before)
        record(conn, now, actor, "import", None, None, f"{summary}; {added} re-parented")
    return added
