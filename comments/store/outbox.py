"""The outbox: deliveries written in the transaction of the change that causes them, claimed by
one worker at a time, retried with backoff, listed and retried by moderators; and the webhooks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..models import OutboxEvent, Status, Webhook
from . import subscriptions
from .common import comment_t, page_t, record, rfc3339

outbox_t: sa.Table = OutboxEvent.__table__  # type: ignore[attr-defined]
webhook_t: sa.Table = Webhook.__table__  # type: ignore[attr-defined]

PENDING, DELIVERING, DONE, FAILED = "pending", "delivering", "done", "failed"
OUTBOX_STATUSES = (PENDING, DELIVERING, DONE, FAILED)
WEBHOOK, HELD, DIGEST_ITEM, DIGEST, CONFIRM, REPLY = (
    "webhook", "mail.held", "mail.digest_item", "mail.digest", "mail.confirm", "mail.reply")
EVENTS = ("comment.created", "comment.approved", "comment.spam", "comment.trashed", "comment.deleted")
_STATUS_EVENTS = {Status.approved.value: "comment.approved", Status.spam.value: "comment.spam",
                  Status.trash.value: "comment.trashed"}
KEEP_DONE = timedelta(days=7)


def moderator_target(db: Database, address: str) -> str:
    """How the outbox and the audit log name a moderator's address: a keyed-hash prefix."""
    return db.keyring().lookup("moderator:" + address.casefold())[:16]


def moderator_address(db: Database, target: str) -> str | None:
    """The configured moderator address a target names (under any key in force), or None."""
    for address in db.settings.moderator_emails:
        if any(h[:16] == target for h in db.keyring().lookups("moderator:" + address.casefold())):
            return address
    return None


# ---- writing events (inside the caller's transaction) ----------------------------------

_INSERT = outbox_t.insert()  # built once: a new comment's events are written inside the write lock
_HOOKS = sa.select(webhook_t.c.id, webhook_t.c.events)


def _add(conn: Connection, kind: str, payload: dict[str, Any], now: datetime, event_id: str, *,
         target: str | None = None, comment_id: int | None = None, due: datetime | None = None) -> None:
    conn.execute(_INSERT, {
        "event_id": event_id, "kind": kind, "target": target, "comment_id": comment_id, "payload": payload,
        "status": PENDING, "attempts": 0, "next_attempt_at": due or now, "created_at": now})


def _subscribers(conn: Connection, event: str) -> list[int]:
    return [row.id for row in conn.execute(_HOOKS).all() if event in (row.events or [])]


def _public_payload(conn: Connection, comment_id: int) -> dict[str, Any] | None:
    """What webhooks are told about a comment: never its email or client address."""
    row = conn.execute(
        sa.select(comment_t.c.id, page_t.c.key.label("page"), comment_t.c.parent_id, comment_t.c.status,
                  comment_t.c.author, comment_t.c.url, comment_t.c.body_html, comment_t.c.created_at,
                  comment_t.c.spam_score, comment_t.c.spam_reasons)
        .select_from(comment_t.join(page_t, comment_t.c.page_id == page_t.c.id)).where(comment_t.c.id == comment_id)
    ).first()
    if row is None:
        return None
    return {"id": row.id, "page": row.page, "parent": row.parent_id, "status": row.status, "author": row.author,
            "url": row.url, "body_html": row.body_html, "created_at": rfc3339(row.created_at),
            "spam_score": float(row.spam_score), "spam_reasons": list(row.spam_reasons or [])}


def _webhook_event(conn: Connection, event: str, comment: dict[str, Any] | None, comment_id: int,
                   now: datetime) -> None:
    """One delivery per webhook that wants this event; without `comment`, the comment's public
    payload, read only when some webhook wants it."""
    hooks = _subscribers(conn, event)
    if not hooks:
        return
    if comment is None:
        comment = _public_payload(conn, comment_id)
        if comment is None:
            return
    event_id = uuid.uuid4().hex
    payload = {"id": event_id, "type": event, "created_at": rfc3339(now), "comment": comment}
    for hook in hooks:
        _add(conn, WEBHOOK, payload, now, event_id, target=str(hook), comment_id=comment_id)


def _mail_on(db: Database) -> bool:
    return bool(db.settings.smtp_host)


def _digest_due(now: datetime, minutes: int) -> datetime:
    """The end of the digest period this moment falls in."""
    period = minutes * 60
    epoch = datetime(1970, 1, 1)
    seconds = int((now - epoch).total_seconds())
    return epoch + timedelta(seconds=(seconds // period + 1) * period)


def _reply_notice(conn: Connection, db: Database, comment_id: int, now: datetime) -> None:
    if not _mail_on(db):
        return
    parent = conn.execute(sa.select(comment_t.c.parent_id).where(comment_t.c.id == comment_id)).scalar()
    if parent is None or not subscriptions.watched(conn, parent):
        return
    sent = conn.execute(sa.select(outbox_t.c.id).where(
        outbox_t.c.comment_id == comment_id, outbox_t.c.kind == REPLY).limit(1)).first()
    if sent is None:  # approved, unapproved and approved again: one notice
        _add(conn, REPLY, {"comment_id": comment_id}, now, uuid.uuid4().hex, comment_id=comment_id)


def comment_created(conn: Connection, db: Database, comment_id: int, status: str, now: datetime,
                    notify: bool = False) -> None:
    """The events a new comment (in `status`) causes: webhooks, mail to moderators when it is
    held, a reply notice when it is published as a reply, a confirmation mail when its author
    asked for notices."""
    _webhook_event(conn, "comment.created", None, comment_id, now)
    settings = db.settings
    if status == Status.pending.value and _mail_on(db):
        minutes = settings.digest_minutes
        for address in settings.moderator_emails:
            kind, due = (DIGEST_ITEM, _digest_due(now, minutes)) if minutes else (HELD, None)
            _add(conn, kind, {"comment_id": comment_id}, now, uuid.uuid4().hex,
                 target=moderator_target(db, address), comment_id=comment_id, due=due)
    if status == Status.approved.value:
        _reply_notice(conn, db, comment_id, now)
    if notify:
        subscription = subscriptions.request_notices(conn, db, comment_id, now)
        if subscription is not None and _mail_on(db):
            _add(conn, CONFIRM, {"subscription_id": subscription}, now, uuid.uuid4().hex)


def status_changed(conn: Connection, db: Database, changes: list[tuple[int, str, str | None]], now: datetime) -> None:
    """The events of moderators' status changes, each (comment id, from, to); to None means unchanged."""
    for comment_id, before, after in changes:
        if after is None or after == before or after not in _STATUS_EVENTS:
            continue
        _webhook_event(conn, _STATUS_EVENTS[after], None, comment_id, now)
        if after == Status.approved.value:
            _reply_notice(conn, db, comment_id, now)


def comment_deleted(conn: Connection, row: Any, now: datetime) -> None:
    """The event of a comment deleted for good (row: id, parent_id, status, page_id)."""
    if not _subscribers(conn, "comment.deleted"):
        return
    page = conn.execute(sa.select(page_t.c.key).where(page_t.c.id == row.page_id)).scalar()
    _webhook_event(conn, "comment.deleted", {"id": row.id, "page": page, "parent": row.parent_id,
                                             "status": row.status}, row.id, now)


# ---- the worker's side --------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """One delivery this worker holds until `until`."""

    id: int
    event_id: str
    kind: str
    target: str | None
    comment_id: int | None
    payload: dict[str, Any]
    attempts: int
    claim: str


def _due(now: datetime) -> Any:
    return sa.and_(outbox_t.c.kind != DIGEST_ITEM, sa.or_(
        sa.and_(outbox_t.c.status == PENDING, outbox_t.c.next_attempt_at <= now),
        sa.and_(outbox_t.c.status == DELIVERING, outbox_t.c.claimed_until < now),  # its worker died
    ))


def due(db: Database, now: datetime) -> tuple[bool, bool]:
    """(deliveries due, digests due): a cheap read, so idle workers do not take the write lock."""
    with db.read() as conn:
        due = conn.execute(sa.select(outbox_t.c.id).where(_due(now)).limit(1)).first() is not None
        digest = conn.execute(sa.select(outbox_t.c.id).where(
            outbox_t.c.kind == DIGEST_ITEM, outbox_t.c.status == PENDING, outbox_t.c.next_attempt_at <= now,
        ).limit(1)).first() is not None
    return due, digest


def claim(db: Database, claim_id: str, now: datetime, limit: int, lease_seconds: int) -> list[Claimed]:
    """Take up to `limit` due deliveries for this claim: row locks skipped by others on PostgreSQL,
    the write lock (BEGIN IMMEDIATE) on SQLite; a crashed worker's claim lapses at claimed_until."""
    values = {"status": DELIVERING, "claimed_by": claim_id, "claimed_until": now + timedelta(seconds=lease_seconds),
              "attempts": outbox_t.c.attempts + 1}
    pick = sa.select(outbox_t.c.id).where(_due(now)).order_by(outbox_t.c.next_attempt_at, outbox_t.c.id).limit(limit)
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            ids = conn.execute(pick.with_for_update(skip_locked=True)).scalars().all()
            if ids:
                conn.execute(outbox_t.update().where(outbox_t.c.id.in_(ids)).values(**values))
        else:
            conn.execute(outbox_t.update().where(outbox_t.c.id.in_(pick.scalar_subquery())).values(**values))
        rows = conn.execute(sa.select(outbox_t).where(outbox_t.c.claimed_by == claim_id,
                                                      outbox_t.c.status == DELIVERING)
                            .order_by(outbox_t.c.id)).all()
    return [Claimed(r.id, r.event_id, r.kind, r.target, r.comment_id, dict(r.payload or {}), r.attempts, claim_id)
            for r in rows]


def backoff(attempts: int, jitter: float, base: float = 30.0, cap: float = 6 * 3600.0) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from base, capped,
    spread by jitter (0 to 1) over the upper half so that workers do not retry in step."""
    return min(cap, base * 2 ** max(0, attempts - 1)) * (0.5 + 0.5 * jitter)


def finish(db: Database, item: Claimed, now: datetime, error: str | None = None, *, permanent: bool = False,
           max_tries: int = 8, jitter: float = 0.5) -> str:
    """Record a delivery's outcome while the claim is still ours; the row's new status ("lost" if
    another worker took it over meanwhile)."""
    if error is None:
        values: dict[str, Any] = {"status": DONE, "delivered_at": now, "last_error": None}
    elif permanent or item.attempts >= max_tries:
        values = {"status": FAILED, "last_error": error[:200]}
    else:
        values = {"status": PENDING, "last_error": error[:200],
                  "next_attempt_at": now + timedelta(seconds=backoff(item.attempts, jitter))}
    with db.write() as conn:
        done = conn.execute(outbox_t.update().where(outbox_t.c.id == item.id, outbox_t.c.claimed_by == item.claim)
                            .values(claimed_by=None, claimed_until=None, **values)).rowcount
    return str(values["status"]) if done else "lost"


def release(db: Database, item: Claimed) -> None:
    """Give back a claimed delivery that was not tried (the worker is stopping)."""
    with db.write() as conn:
        conn.execute(outbox_t.update().where(outbox_t.c.id == item.id, outbox_t.c.claimed_by == item.claim)
                     .values(status=PENDING, claimed_by=None, claimed_until=None, attempts=outbox_t.c.attempts - 1))


def gather_digests(db: Database, now: datetime) -> int:
    """Turn the held comments whose digest period ended into one digest delivery per moderator;
    each item lands in exactly one digest, however many workers run this at once."""
    with db.write() as conn:
        taken = conn.execute(
            outbox_t.update().where(outbox_t.c.kind == DIGEST_ITEM, outbox_t.c.status == PENDING,
                                    outbox_t.c.next_attempt_at <= now)
            .values(status=DONE, delivered_at=now).returning(outbox_t.c.target, outbox_t.c.comment_id)
        ).all()
        per_target: dict[str, list[int]] = {}
        for target, comment_id in taken:
            per_target.setdefault(target, []).append(comment_id)
        for target, ids in per_target.items():
            _add(conn, DIGEST, {"comment_ids": sorted(ids)}, now, uuid.uuid4().hex, target=target)
    return len(per_target)


def prune(db: Database, now: datetime) -> int:
    """Delete deliveries done more than a week ago."""
    with db.write() as conn:
        return int(conn.execute(outbox_t.delete().where(
            outbox_t.c.status == DONE, outbox_t.c.delivered_at < now - KEEP_DONE)).rowcount)


def webhook_target(db: Database, webhook_id: int) -> tuple[str, str] | None:
    """(url, secret) of a webhook, or None if it was removed."""
    with db.read() as conn:
        row = conn.execute(sa.select(webhook_t.c.url, webhook_t.c.secret).where(webhook_t.c.id == webhook_id)).first()
    return (row.url, row.secret) if row is not None else None


# ---- moderators' side ---------------------------------------------------------------------

_LISTED = (outbox_t.c.id, outbox_t.c.event_id, outbox_t.c.kind, outbox_t.c.target, outbox_t.c.comment_id,
           outbox_t.c.payload, outbox_t.c.status, outbox_t.c.attempts, outbox_t.c.next_attempt_at,
           outbox_t.c.last_error, outbox_t.c.created_at, outbox_t.c.delivered_at)


def _item(row: Any) -> dict[str, Any]:
    data = row._asdict()
    payload = data.pop("payload") or {}
    data["event"] = payload.get("type") if data["kind"] == WEBHOOK else data["kind"]
    if data["kind"] == WEBHOOK:
        data["target"] = f"webhook {data['target']}"
    elif data["kind"] in (HELD, DIGEST, DIGEST_ITEM):
        data["target"] = f"moderator {data['target']}"
    else:
        data["target"] = "reader"
    if data["kind"] == DIGEST:
        data["comment_ids"] = payload.get("comment_ids", [])
    return data


def list_events(db: Database, status: str | None, limit: int, before_id: int | None
                ) -> tuple[list[dict[str, Any]], int | None, dict[str, int]]:
    """Deliveries newest first, optionally of one status; (items, id to continue before, counts)."""
    where = [] if status is None else [outbox_t.c.status == status]
    if before_id is not None:
        where.append(outbox_t.c.id < before_id)
    with db.read() as conn:
        rows = conn.execute(sa.select(*_LISTED).where(*where).order_by(outbox_t.c.id.desc()).limit(limit + 1)).all()
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        counts.update({s: int(n) for s, n in conn.execute(
            sa.select(outbox_t.c.status, sa.func.count()).group_by(outbox_t.c.status)).all() if s in counts})
    items = [_item(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None), counts


def retry(db: Database, event_id: int, actor: str, now: datetime) -> dict[str, Any] | None:
    """Make a failed (or waiting) delivery due now with a fresh count of tries; None if there is
    no such delivery, the row unchanged if it is delivering or done."""
    with db.write() as conn:
        row = conn.execute(sa.select(outbox_t.c.status).where(outbox_t.c.id == event_id)).first()
        if row is None:
            return None
        if row.status in (FAILED, PENDING):
            conn.execute(outbox_t.update().where(outbox_t.c.id == event_id).values(
                status=PENDING, attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None))
            record(conn, now, actor, "outbox_retry", None, row.status, f"delivery {event_id}")
        return _item(conn.execute(sa.select(*_LISTED).where(outbox_t.c.id == event_id)).one())


def list_webhooks(db: Database) -> list[dict[str, Any]]:
    """Every webhook, without its secret."""
    with db.read() as conn:
        rows = conn.execute(sa.select(webhook_t.c.id, webhook_t.c.url, webhook_t.c.events, webhook_t.c.created_by,
                                      webhook_t.c.created_at).order_by(webhook_t.c.id)).all()
    return [row._asdict() for row in rows]


def add_webhook(db: Database, url: str, events: list[str], secret: str, actor: str, now: datetime) -> dict[str, Any]:
    with db.write() as conn:
        hook_id = conn.execute(webhook_t.insert().values(url=url, events=events, secret=secret, created_by=actor,
                                                         created_at=now).returning(webhook_t.c.id)).scalar_one()
        record(conn, now, actor, "webhook_add", None, None, f"webhook {hook_id}: {', '.join(events)}")
    return {"id": hook_id, "url": url, "events": events, "created_by": actor, "created_at": now}


def remove_webhook(db: Database, webhook_id: int, actor: str, now: datetime) -> bool:
    """Delete a webhook; its undelivered events are dropped (marked done, "webhook removed")."""
    with db.write() as conn:
        gone = conn.execute(webhook_t.delete().where(webhook_t.c.id == webhook_id)).rowcount
        if not gone:
            return False
        conn.execute(outbox_t.update().where(outbox_t.c.kind == WEBHOOK, outbox_t.c.target == str(webhook_id),
                                             outbox_t.c.status.in_([PENDING, FAILED]))
                     .values(status=DONE, delivered_at=now, last_error="webhook removed"))
        record(conn, now, actor, "webhook_remove", None, f"webhook {webhook_id}", None)
    return True
