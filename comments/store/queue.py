"""The moderators' side of comments: lists with counts, one comment in full, status changes, edits, deletes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..errors import not_found
from ..models import STATUSES, Status
from ..forms import normalise_email
from .comments import body_hash, delete_comment_in, email_lookups, page_row, url_host
from .spam import forget_before_edit, learn_verdict, learn_verdicts
from . import outbox
from .common import bump_thread, comment_t, page_t, record, reveal

FULL_COLUMNS = (
    comment_t.c.id, comment_t.c.parent_id, comment_t.c.author, comment_t.c.url,
    comment_t.c.body_html, comment_t.c.created_at, page_t.c.key.label("page"), comment_t.c.status,
    comment_t.c.email, comment_t.c.ip, comment_t.c.user_agent, comment_t.c.spam_score,
    comment_t.c.spam_reasons, comment_t.c.updated_at, comment_t.c.page_id, comment_t.c.body,
)
_JOINED = comment_t.join(page_t, comment_t.c.page_id == page_t.c.id)


def _full(db: Database, row: Any) -> dict[str, Any]:
    data = row._asdict()
    data["parent"] = data.pop("parent_id")
    data["email"] = reveal(db, data["email"])
    return data


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    next_key: tuple[datetime, int] | None  # (created_at, id) of the last item when more follow
    counts: dict[str, int]


def list_comments(
    db: Database, status: str, page: str | None, q: str | None, limit: int,
    after: tuple[datetime, int] | None,
) -> Listing:
    """One status's comments: pending oldest first (a queue), the others newest first."""
    ascending = status == Status.pending.value
    with db.read() as conn:
        page_id = None
        if page is not None:
            found = page_row(conn, page)
            if found is None:
                return Listing([], None, dict.fromkeys(STATUSES, 0))
            page_id = found.id
        where = [comment_t.c.status == status]
        if page_id is not None:
            where.append(comment_t.c.page_id == page_id)
        if q:
            for word in q.split()[:10]:
                where.append(_matches(db, word))
        order = (comment_t.c.created_at, comment_t.c.id)
        if after is not None:
            key = sa.tuple_(*order)
            where.append(key > sa.tuple_(*after) if ascending else key < sa.tuple_(*after))
        stmt = (
            sa.select(*FULL_COLUMNS).select_from(_JOINED).where(*where)
            .order_by(*(c.asc() if ascending else c.desc() for c in order)).limit(limit + 1)
        )
        rows = conn.execute(stmt).all()
        count_stmt = sa.select(comment_t.c.status, sa.func.count()).group_by(comment_t.c.status)
        if page_id is not None:
            count_stmt = count_stmt.where(comment_t.c.page_id == page_id)
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({s: int(n) for s, n in conn.execute(count_stmt).all() if s in counts})
    items = [_full(db, r) for r in rows[:limit]]
    more = len(rows) > limit
    next_key = (items[-1]["created_at"], items[-1]["id"]) if more else None
    return Listing(items, next_key, counts)


def _matches(db: Database, word: str) -> Any:
    """A search word matches body or author; an email address matches its author's comments
    (addresses are encrypted, so they are found by their keyed hash, whole, not by parts)."""
    condition = sa.or_(comment_t.c.body.icontains(word, autoescape=True),
                       comment_t.c.author.icontains(word, autoescape=True))
    if "@" in word:
        try:
            address = normalise_email(word)
        except ValueError:
            return condition
        return sa.or_(condition, comment_t.c.email_key.in_(email_lookups(db, address)))
    return condition


def get_full(db: Database, comment_id: int) -> dict[str, Any]:
    with db.read() as conn:
        return _get_full(db, conn, comment_id)


def _get_full(db: Database, conn: Connection, comment_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(*FULL_COLUMNS).select_from(_JOINED).where(comment_t.c.id == comment_id)).first()
    if row is None:
        raise not_found()
    return _full(db, row)


@dataclass(frozen=True)
class Change:
    """A moderator's change to one comment; None means 'leave as it is'."""

    status: str | None = None
    body: str | None = None
    body_html: str | None = None
    policy_version: int | None = None
    author: str | None = None
    url: str | None = None
    clear_url: bool = False


def change_comment(db: Database, comment_id: int, change: Change, actor: str, now: datetime) -> dict[str, Any]:
    """Apply a moderator's change, record it, and return the full view."""
    with db.write() as conn:
        row = _get_full(db, conn, comment_id)
        values: dict[str, Any] = {}
        edits_text = any((change.body is not None and change.body != row["body"],
                          change.author is not None and change.author != row["author"],
                          change.clear_url or (change.url is not None and change.url != row["url"])))
        if edits_text:
            forget_before_edit(conn, comment_id)
        if change.body is not None and change.body != row["body"]:
            values.update(body=change.body, body_html=change.body_html, body_hash=body_hash(change.body),
                          policy_version=change.policy_version)
            record(conn, now, actor, "edit_body", comment_id)
        if change.author is not None and change.author != row["author"]:
            values["author"] = change.author
            record(conn, now, actor, "edit_author", comment_id, row["author"], change.author)
        new_url = None if change.clear_url else change.url
        if (change.clear_url or change.url is not None) and new_url != row["url"]:
            values["url"] = new_url
            record(conn, now, actor, "edit_url", comment_id, row["url"], new_url)
        if change.status is not None and change.status != row["status"]:
            values["status"] = change.status
            record(conn, now, actor, "status", comment_id, row["status"], change.status)
        if values:
            values["updated_at"] = now
            if "url" in values:
                values["url_host"] = url_host(values["url"])
            conn.execute(comment_t.update().where(comment_t.c.id == comment_id).values(**values))
            outbox.status_changed(conn, db, [(comment_id, row["status"], values.get("status"))], now)
            if Status.approved.value in (row["status"], values.get("status")):
                bump_thread(conn, row["page_id"])
        if change.status is not None:  # confirming a status is a verdict too; learned once
            learn_verdict(conn, comment_id, change.status)
        return _get_full(db, conn, comment_id)


def bulk_status(db: Database, ids: list[int], status: str, actor: str, now: datetime) -> tuple[list[int], list[int]]:
    """Set one status on many comments: (updated ids, missing ids)."""
    updated: list[int] = []
    missing: list[int] = []
    with db.write() as conn:
        rows = {
            r.id: r for r in conn.execute(
                sa.select(comment_t.c.id, comment_t.c.status, comment_t.c.page_id).where(comment_t.c.id.in_(ids))
            ).all()
        }
        pages: set[int] = set()
        for comment_id in ids:
            row = rows.get(comment_id)
            if row is None:
                missing.append(comment_id)
                continue
            updated.append(comment_id)
            if row.status == status:
                continue
            conn.execute(comment_t.update().where(comment_t.c.id == comment_id).values(status=status, updated_at=now))
            record(conn, now, actor, "status", comment_id, row.status, status)
            outbox.status_changed(conn, db, [(comment_id, row.status, status)], now)
            if Status.approved.value in (row.status, status):
                pages.add(row.page_id)
        learn_verdicts(conn, [(comment_id, status) for comment_id in updated])
        for page_id in pages:
            bump_thread(conn, page_id)
    return updated, missing


def delete_comment(db: Database, comment_id: int, actor: str, now: datetime) -> None:
    with db.write() as conn:
        row = conn.execute(
            sa.select(comment_t.c.id, comment_t.c.parent_id, comment_t.c.status, comment_t.c.page_id)
            .where(comment_t.c.id == comment_id)
        ).first()
        if row is None:
            raise not_found()
        delete_comment_in(conn, row, actor, now)

