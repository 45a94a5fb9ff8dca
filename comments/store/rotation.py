"""Key rotation: re-encrypt stored addresses, and recompute their lookup hashes, under the newest key."""

from __future__ import annotations

import sqlalchemy as sa

from ..db import Database
from .common import comment_t, reveal

BATCH = 500


def _tables() -> list[sa.Table]:
    from .subscriptions import subscription_t

    return [comment_t, subscription_t]


def _stale(table: sa.Table, current_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.email != "", sa.not_(table.c.email.like(f"e1.{current_id}.%")))


def remaining(db: Database) -> int:
    """Addresses (of comments and of reply-notice subscribers) not yet under the newest key."""
    ring = db.keyring()
    with db.read() as conn:
        return sum(int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                    .where(_stale(table, ring.current_id))).scalar_one())
                   for table in _tables())


def reencrypt(db: Database, table: sa.Table, limit: int = BATCH) -> int:
    """Re-encrypt up to `limit` addresses of one table in one transaction; 0 when none are left."""
    ring = db.keyring()
    with db.write() as conn:
        rows = conn.execute(
            sa.select(table.c.id, table.c.email).where(_stale(table, ring.current_id))
            .order_by(table.c.id).limit(limit)
        ).all()
        for row in rows:
            address = reveal(db, row.email)
            # Compare-and-set: an erase committed since the read is not undone.
            conn.execute(table.update().where(table.c.id == row.id, table.c.email == row.email).values(
                email=ring.encrypt(address), email_key=ring.lookup("email:" + address.casefold())))
    return len(rows)


def rotate_batch(db: Database) -> int:
    """Re-encrypt one batch (comments first, then reply-notice subscribers); 0 when none are left.
    Safe to interrupt and rerun."""
    for table in _tables():
        moved = reencrypt(db, table, BATCH)
        if moved:
            return moved
    return 0
