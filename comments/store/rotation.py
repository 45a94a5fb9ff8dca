"""Key rotation: re-encrypt stored addresses, and recompute their lookup hashes, under the newest key."""

from __future__ import annotations

import sqlalchemy as sa

from ..db import Database
from .common import comment_t, reveal

BATCH = 500


def remaining(db: Database) -> int:
    """Addresses not yet under the newest key."""
    ring = db.keyring()
    with db.read() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(comment_t)
            .where(comment_t.c.email != "", sa.not_(comment_t.c.email.like(f"e1.{ring.current_id}.%")))
        ).scalar_one())


def rotate_batch(db: Database) -> int:
    """Re-encrypt up to one batch in one transaction (comments first, then reply-notice subscribers);
    0 when none are left. Safe to interrupt and rerun."""
    from .subscriptions import rotate_batch as rotate_subscribers

    moved = _rotate_comments(db)
    return moved or rotate_subscribers(db, BATCH)


def _rotate_comments(db: Database) -> int:
    ring = db.keyring()
    with db.write() as conn:
        rows = conn.execute(
            sa.select(comment_t.c.id, comment_t.c.email)
            .where(comment_t.c.email != "", sa.not_(comment_t.c.email.like(f"e1.{ring.current_id}.%")))
            .order_by(comment_t.c.id).limit(BATCH)
        ).all()
        for row in rows:
            address = reveal(db, row.email)
            # Compare-and-set: an erase committed since the read is not undone.
            conn.execute(comment_t.update().where(comment_t.c.id == row.id, comment_t.c.email == row.email).values(
                email=ring.encrypt(address), email_key=ring.lookup("email:" + address.casefold())))
    return len(rows)
