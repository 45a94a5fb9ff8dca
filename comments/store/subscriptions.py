"""Reply notices: readers' double opt-in subscriptions, the comments they watch, and used one-click links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..db import Database
from ..models import MailLinkUse, NoticeSubscription, ReplyWatch, Status
from .common import comment_t, insert_ignore, page_t, reveal

subscription_t: sa.Table = NoticeSubscription.__table__  # type: ignore[attr-defined]
watch_t: sa.Table = ReplyWatch.__table__  # type: ignore[attr-defined]
link_use_t: sa.Table = MailLinkUse.__table__  # type: ignore[attr-defined]

# A second confirmation mail for the same address is sent at most this often.
CONFIRM_AGAIN = timedelta(hours=24)


def stamp(moment: datetime) -> int:
    """A row's creation time as whole seconds: links name (id, stamp) so a reused id never matches."""
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def _lookups(db: Database, email: str) -> list[str]:
    from .comments import email_lookups

    return email_lookups(db, email)


def request_notices(conn: Connection, db: Database, comment_id: int, now: datetime) -> int | None:
    """The author of this new comment asked for reply notices: watch the comment for its address.
    Returns the subscription's id when a confirmation mail should go out, else None."""
    row = conn.execute(sa.select(comment_t.c.email).where(comment_t.c.id == comment_id)).first()
    if row is None or not row.email:
        return None
    keys = _lookups(db, reveal(db, row.email))
    find = sa.select(subscription_t).where(subscription_t.c.email_key.in_(keys)).limit(1)
    sub = conn.execute(find).first()
    if sub is None:
        insert_ignore(conn, subscription_t, {"email": row.email, "email_key": keys[0], "created_at": now}, ["email_key"])
        sub = conn.execute(find).one()  # there now: inserted here, or by another writer just before
    insert_ignore(conn, watch_t, {"comment_id": comment_id, "subscription_id": sub.id, "created_at": now},
                  ["comment_id"])
    if sub.confirmed_at is not None and sub.unsubscribed_at is None:
        return None
    if sub.unsubscribed_at is None and sub.requested_at is not None and now - sub.requested_at < CONFIRM_AGAIN:
        return None  # a confirmation mail went out lately; the new watch waits for that one
    conn.execute(subscription_t.update().where(subscription_t.c.id == sub.id).values(
        requested_at=now, confirmed_at=None, unsubscribed_at=None))
    return int(sub.id)


def watched(conn: Connection, comment_id: int) -> bool:
    """Whether the author of this comment asked for notices of replies to it."""
    return conn.execute(sa.select(watch_t.c.comment_id).where(watch_t.c.comment_id == comment_id)).first() is not None


@dataclass(frozen=True)
class Recipient:
    """A subscriber's address (in clear, for the mail only) and what its links name."""

    email: str
    subscription_id: int
    stamp: int


@dataclass(frozen=True)
class ReplyNotice:
    """Everything a reply notice says: to whom, the reply, and the comment it answers."""

    to: Recipient
    reply: dict[str, Any]
    parent: dict[str, Any]


def confirmation(db: Database, subscription_id: int) -> Recipient | None:
    """Whom a confirmation mail goes to, if the subscription still waits for one."""
    with db.read() as conn:
        sub = conn.execute(sa.select(subscription_t).where(subscription_t.c.id == subscription_id)).first()
    if sub is None or sub.confirmed_at is not None or sub.unsubscribed_at is not None or not sub.email:
        return None
    return Recipient(reveal(db, sub.email), sub.id, stamp(sub.created_at))


def reply_notice(db: Database, reply_id: int) -> ReplyNotice | None:
    """The notice for an approved reply, if the parent's author watches it with a confirmed address
    (never when that address also wrote the reply); None otherwise."""
    parent_t = comment_t.alias("parent")
    columns = (
        comment_t.c.id, comment_t.c.status, comment_t.c.author, comment_t.c.body, comment_t.c.body_html,
        comment_t.c.email, comment_t.c.created_at, page_t.c.key.label("page"),
        parent_t.c.id.label("parent_id"), parent_t.c.author.label("parent_author"),
        parent_t.c.email.label("parent_email"), parent_t.c.body_html.label("parent_body_html"),
        subscription_t.c.id.label("sub_id"), subscription_t.c.email.label("sub_email"),
        subscription_t.c.created_at.label("sub_created"), subscription_t.c.confirmed_at,
        subscription_t.c.unsubscribed_at,
    )
    joined = (comment_t.join(page_t, comment_t.c.page_id == page_t.c.id)
              .join(parent_t, parent_t.c.id == comment_t.c.parent_id)
              .join(watch_t, watch_t.c.comment_id == parent_t.c.id)
              .join(subscription_t, subscription_t.c.id == watch_t.c.subscription_id))
    with db.read() as conn:
        row = conn.execute(sa.select(*columns).select_from(joined).where(comment_t.c.id == reply_id)).first()
    if row is None or row.status != Status.approved.value:
        return None
    if row.confirmed_at is None or row.unsubscribed_at is not None or not row.parent_email or not row.sub_email:
        return None
    address = reveal(db, row.sub_email)
    parent_address = reveal(db, row.parent_email)
    if parent_address.casefold() != address.casefold():
        return None  # the parent's author was erased or changed: the watch no longer speaks for them
    if row.email and reveal(db, row.email).casefold() == address.casefold():
        return None  # no mail to the author of the reply about their own comment
    reply = {"id": row.id, "author": row.author, "body": row.body, "body_html": row.body_html,
             "page": row.page, "created_at": row.created_at}
    parent = {"id": row.parent_id, "author": row.parent_author, "body_html": row.parent_body_html}
    return ReplyNotice(Recipient(address, row.sub_id, stamp(row.sub_created)), reply, parent)


def _subscription(conn: Connection, subscription_id: int, created: int) -> Any:
    sub = conn.execute(sa.select(subscription_t).where(subscription_t.c.id == subscription_id)).first()
    return sub if sub is not None and stamp(sub.created_at) == created else None


def confirm(db: Database, subscription_id: int, created: int, now: datetime) -> bool:
    """Confirm an address (idempotent); False when the link names no subscription."""
    with db.write() as conn:
        sub = _subscription(conn, subscription_id, created)
        if sub is None:
            return False
        if sub.confirmed_at is None or sub.unsubscribed_at is not None:
            conn.execute(subscription_t.update().where(subscription_t.c.id == sub.id).values(
                confirmed_at=now, unsubscribed_at=None))
    return True


def unsubscribe(db: Database, subscription_id: int, created: int, now: datetime) -> bool:
    """Stop every reply notice to this address (idempotent); its watches go too."""
    with db.write() as conn:
        sub = _subscription(conn, subscription_id, created)
        if sub is None:
            return False
        if sub.unsubscribed_at is None:
            conn.execute(subscription_t.update().where(subscription_t.c.id == sub.id).values(
                unsubscribed_at=now, confirmed_at=None))
        conn.execute(watch_t.delete().where(watch_t.c.subscription_id == sub.id))
    return True


def subscription_state(db: Database, email: str) -> dict[str, Any] | None:
    """An address's subscription as stored (for tests and the person export): times only."""
    with db.read() as conn:
        sub = conn.execute(sa.select(subscription_t).where(
            subscription_t.c.email_key.in_(_lookups(db, email)))).first()
        if sub is None:
            return None
        count = conn.execute(sa.select(sa.func.count()).select_from(watch_t).where(
            watch_t.c.subscription_id == sub.id)).scalar_one()
    return {"id": sub.id, "created_at": sub.created_at, "requested_at": sub.requested_at,
            "confirmed_at": sub.confirmed_at, "unsubscribed_at": sub.unsubscribed_at, "watching": int(count)}


def use_link(db: Database, digest: str, now: datetime, expires_at: datetime) -> bool:
    """Mark a one-click link used; False when it was used before (so it works once)."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(link_use_t).values(digest=digest, used_at=now, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["digest"]).returning(link_use_t.c.digest))
    with db.write() as conn:
        return conn.execute(stmt).first() is not None  # no row back: it was there already


def link_used(db: Database, digest: str) -> bool:
    with db.read() as conn:
        return conn.execute(sa.select(link_use_t.c.digest).where(link_use_t.c.digest == digest)).first() is not None


def prune_links(db: Database, now: datetime) -> int:
    """Forget used links once they have expired anyway."""
    with db.write() as conn:
        return int(conn.execute(link_use_t.delete().where(link_use_t.c.expires_at < now)).rowcount)


def forget(conn: Connection, email_keys: list[str]) -> int:
    """Erase an address's subscription (its watches go with it): for erasing a person."""
    return int(conn.execute(subscription_t.delete().where(subscription_t.c.email_key.in_(email_keys))).rowcount)


def rotate_batch(db: Database, limit: int = 500) -> int:
    """Re-encrypt up to `limit` subscribers' addresses under the newest key; 0 when none are left."""
    from .rotation import reencrypt

    return reencrypt(db, subscription_t, limit)
