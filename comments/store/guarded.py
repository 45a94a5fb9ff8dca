"""The moderators' web page's writes: status changes and deletes that first check the status the
moderator saw, the site's own replies, and the opening words of the comments being replied to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..errors import ApiError, not_found
from ..models import STATUSES, Status
from . import outbox
from .comments import body_hash, delete_comment_in
from .common import action_t, bump_thread, comment_t, record
from .spam import LABELS, forget_before_edit, learn_verdict

PENDING = Status.pending.value
APPROVED = Status.approved.value


class Moved(Exception):
    """The comment is no longer in the status the moderator saw: someone else moved it first."""

    def __init__(self, comment_id: int, current: str) -> None:
        super().__init__(f"comment {comment_id} is now {current}")
        self.comment_id = comment_id
        self.current = current


@dataclass
class BulkResult:
    """What a guarded bulk change did: (id, from, to) per change, (id, now) per moved one, missing ids."""

    changed: list[tuple[int, str, str]] = field(default_factory=list)
    moved: list[tuple[int, str]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


def _row(conn: Connection, comment_id: int) -> Any:
    return conn.execute(
        sa.select(comment_t.c.id, comment_t.c.parent_id, comment_t.c.status, comment_t.c.page_id)
        .where(comment_t.c.id == comment_id)
    ).first()


def previous_status(conn: Connection, comment_id: int, current: str) -> str:
    """The status a comment had before it was moved to current (pending if the record does not say)."""
    before = conn.execute(
        sa.select(action_t.c.from_value)
        .where(action_t.c.comment_id == comment_id, action_t.c.action == "status",
               action_t.c.to_value == current)
        .order_by(action_t.c.id.desc()).limit(1)
    ).scalar()
    return before if before in STATUSES and before != current else PENDING


def _move(conn: Connection, db: Database, row: Any, to: str | None, actor: str, now: datetime,
          undo: bool = False) -> str:
    """Set the status (None: the one before) only if it is still row.status; the new status.
    The spam filter learns from a move to spam or approved; an undo back to pending or trash also
    takes back what the undone move taught it."""
    target = to or previous_status(conn, row.id, row.status)
    if target == row.status:
        return target
    done = conn.execute(
        comment_t.update().where(comment_t.c.id == row.id, comment_t.c.status == row.status)
        .values(status=target, updated_at=now)
    ).rowcount
    if not done:  # another worker moved it between our read and our write
        current = _row(conn, row.id)
        if current is None:
            raise not_found()
        raise Moved(row.id, current.status)
    record(conn, now, actor, "status", row.id, row.status, target)
    outbox.status_changed(conn, db, [(row.id, row.status, target)], now)
    if undo and target not in LABELS:
        forget_before_edit(conn, row.id)
    learn_verdict(conn, row.id, target)
    if APPROVED in (row.status, target):
        bump_thread(conn, row.page_id)
    return target


def set_status(db: Database, comment_id: int, to: str | None, expected: str | None, actor: str,
               now: datetime, undo: bool = False) -> tuple[str, str]:
    """Move one comment to `to` (None: back to its previous status) if it is still `expected`;
    (from, to), or Moved, or a 404. undo: this move takes back the moderator's last one."""
    with db.write() as conn:
        row = _row(conn, comment_id)
        if row is None:
            raise not_found()
        if expected is not None and row.status != expected:
            raise Moved(comment_id, row.status)
        return row.status, _move(conn, db, row, to, actor, now, undo)


def set_status_many(db: Database, ids: list[int], to: str | None, expected: str | None, actor: str,
                    now: datetime, undo: bool = False) -> BulkResult:
    """set_status for many comments in one transaction; moved and missing ones are left alone."""
    result = BulkResult()
    with db.write() as conn:
        rows = {r.id: r for r in conn.execute(
            sa.select(comment_t.c.id, comment_t.c.parent_id, comment_t.c.status, comment_t.c.page_id)
            .where(comment_t.c.id.in_(ids))
        ).all()}
        for comment_id in ids:
            row = rows.get(comment_id)
            if row is None:
                result.missing.append(comment_id)
            elif expected is not None and row.status != expected:
                result.moved.append((comment_id, row.status))
            else:
                try:
                    result.changed.append((comment_id, row.status, _move(conn, db, row, to, actor, now, undo)))
                except Moved as exc:
                    result.moved.append((comment_id, exc.current))
    return result


def delete_seen(db: Database, comment_id: int, expected: str | None, actor: str, now: datetime) -> str:
    """Delete for good if the comment is still `expected`; its last status, or Moved, or a 404."""
    with db.write() as conn:
        row = _row(conn, comment_id)
        if row is None:
            raise not_found()
        if expected is not None and row.status != expected:
            raise Moved(comment_id, row.status)
        delete_comment_in(conn, row, actor, now)
        return str(row.status)


@dataclass(frozen=True)
class SiteReply:
    """A reply written by a moderator and published at once as the site."""

    parent: int
    expected: str | None
    author: str
    body: str
    body_html: str
    policy_version: int


def site_reply(db: Database, reply: SiteReply, actor: str, now: datetime) -> dict[str, Any]:
    """Publish the reply under its parent (approving a pending parent first, as "Approve and reply");
    {id, page_id, parent_was} or Moved, or a 404, or a 422 when the parent is spam or trash."""
    with db.write() as conn:
        parent = _row(conn, reply.parent)
        if parent is None:
            raise not_found()
        if reply.expected is not None and parent.status != reply.expected:
            raise Moved(reply.parent, parent.status)
        if parent.status not in (PENDING, APPROVED):
            raise ApiError(422, f"a comment in {parent.status} cannot be replied to; restore it first",
                           fields={"parent": "is not pending or approved"})
        if parent.status == PENDING:
            _move(conn, db, parent, APPROVED, actor, now)
        # The site has no email address: stored like an erased one (empty address, empty lookup key).
        new_id = conn.execute(
            comment_t.insert().values(
                page_id=parent.page_id, parent_id=parent.id, status=APPROVED, author=reply.author,
                email="", email_key="", url=None, body=reply.body,
                body_html=reply.body_html, body_hash=body_hash(reply.body),
                policy_version=reply.policy_version, ip=None, user_agent=None, spam_score=0.0,
                spam_reasons=[], created_at=now, updated_at=now,
            ).returning(comment_t.c.id)
        ).scalar_one()
        record(conn, now, actor, "site_reply", new_id, None, APPROVED)
        outbox.comment_created(conn, db, new_id, APPROVED, now)
        bump_thread(conn, parent.page_id)
    return {"id": int(new_id), "page_id": int(parent.page_id), "parent_was": str(parent.status)}


def parent_openings(db: Database, ids: list[int], words: int = 12) -> dict[int, dict[str, str]]:
    """For each comment id: its author, status and the opening words of its body (plain text)."""
    if not ids:
        return {}
    with db.read() as conn:
        rows = conn.execute(
            sa.select(comment_t.c.id, comment_t.c.author, comment_t.c.status, comment_t.c.body)
            .where(comment_t.c.id.in_(sorted(set(ids))))
        ).all()
    result = {}
    for row in rows:
        split = row.body.split()
        joined = " ".join(split[:words])
        opening = joined[:120] + ("…" if len(split) > words or len(joined) > 120 else "")
        result[int(row.id)] = {"author": str(row.author), "status": str(row.status), "opening": opening}
    return result
