"""The service's master secret: from the setting, or made and kept in the database on first start."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from ..db import Database
from ..security import Keys, new_token
from .common import insert_ignore, secret_t, utcnow


def load_keys(db: Database) -> Keys:
    """The signing and lookup keys; several workers starting at once agree on one secret."""
    configured = db.settings.secret_key
    if configured:
        return Keys(hashlib.sha256(configured.encode()).digest())
    with db.write() as conn:
        insert_ignore(
            conn, secret_t, {"name": "master", "value": new_token(), "created_at": utcnow()}, ["name"]
        )
        value = conn.execute(sa.select(secret_t.c.value).where(secret_t.c.name == "master")).scalar_one()
    return Keys(hashlib.sha256(value.encode()).digest())
