"""Periodic upkeep: anonymise expired personal data, purge old spam and trash, prune the rate table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..db import Database
from ..models import Status
from ..security import anonymise_ip
from .comments import delete_comment_in
from .common import comment_t, insert_ignore, rate_t
from .spam import prune as prune_spam_model

lease_t: sa.TableClause = sa.table(
    "lease", sa.column("name", sa.String), sa.column("holder", sa.String), sa.column("until", sa.DateTime)
)
BATCH = 500


@dataclass(frozen=True)
class Upkeep:
    anonymised: int
    purged: int
    rate_rows: int
    pruned_features: int


def take_lease(db: Database, name: str, holder: str, now: datetime, seconds: int) -> bool:
    """True if this holder may run the named job now (no other holder's lease is current)."""
    with db.write() as conn:
        insert_ignore(conn, lease_t, {"name": name, "holder": holder, "until": now}, ["name"])  # type: ignore[arg-type]
        taken = conn.execute(
            lease_t.update()
            .where(lease_t.c.name == name, sa.or_(lease_t.c.until <= now, lease_t.c.holder == holder))
            .values(holder=holder, until=now + timedelta(seconds=seconds))
        ).rowcount
    return taken == 1


def anonymise_expired(db: Database, now: datetime) -> int:
    """Full client addresses, their keyed hashes and user agents past their keeping time."""
    done = 0
    while True:
        with db.write() as conn:
            rows = conn.execute(
                sa.select(comment_t.c.id, comment_t.c.ip)
                .where(comment_t.c.personal_until.is_not(None), comment_t.c.personal_until <= now)
                .limit(BATCH)
            ).all()
            for row in rows:
                # Compare-and-set: an erase committed since the read is not undone.
                conn.execute(comment_t.update().where(
                    comment_t.c.id == row.id, comment_t.c.ip == row.ip, comment_t.c.personal_until.is_not(None),
                ).values(ip=anonymise_ip(row.ip), ip_key=None, user_agent=None, personal_until=None))
        done += len(rows)
        if len(rows) < BATCH:
            return done


def purge(db: Database, now: datetime, days: int) -> int:
    """Delete spam and trash left untouched for `days` days (0: never); replies are re-attached."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    done = 0
    while True:
        with db.write() as conn:
            rows = conn.execute(
                sa.select(comment_t.c.id, comment_t.c.parent_id, comment_t.c.status, comment_t.c.page_id)
                .where(comment_t.c.status.in_([Status.spam.value, Status.trash.value]),
                       comment_t.c.updated_at < cutoff)
                .order_by(comment_t.c.id).limit(BATCH)
            ).all()
            for row in rows:
                delete_comment_in(conn, row, "retention", now)
        done += len(rows)
        if len(rows) < BATCH:
            return done


def prune_rate_events(db: Database, now: datetime, horizon_seconds: int) -> int:
    with db.write() as conn:
        return int(conn.execute(
            rate_t.delete().where(rate_t.c.created_at < now - timedelta(seconds=horizon_seconds))
        ).rowcount)


def run_upkeep(db: Database, now: datetime) -> Upkeep:
    """Everything the periodic task does, once."""
    horizon = max(db.settings.rate[1], 86400)
    return Upkeep(
        anonymised=anonymise_expired(db, now),
        purged=purge(db, now, db.settings.retention_days),
        rate_rows=prune_rate_events(db, now, horizon),
        pruned_features=prune_spam_model(db),
    )
