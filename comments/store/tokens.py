"""Moderator tokens: made once, kept only as a hash, looked up by hash."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..db import Database
from ..security import new_token, token_hash
from .common import record, token_t

LAST_USED_GRANULARITY = timedelta(minutes=1)


class TokenExists(Exception):
    pass


def create_token(db: Database, name: str, now: datetime) -> str:
    """A new token for NAME; the token itself is returned once and never stored."""
    token = new_token()
    with db.write() as conn:
        exists = conn.execute(sa.select(token_t.c.id).where(token_t.c.name == name)).first()
        if exists:
            raise TokenExists(name)
        conn.execute(token_t.insert().values(name=name, token_hash=token_hash(token), created_at=now))
        record(conn, now, "cli", "token_create", to_value=name)
    return token


def list_tokens(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(token_t.c.name, token_t.c.created_at, token_t.c.last_used_at).order_by(token_t.c.name)
        ).all()
    return [row._asdict() for row in rows]


def revoke_token(db: Database, name: str, now: datetime) -> bool:
    with db.write() as conn:
        gone = conn.execute(token_t.delete().where(token_t.c.name == name)).rowcount > 0
        if gone:
            record(conn, now, "cli", "token_revoke", from_value=name)
    return gone


def authenticate(db: Database, token: str, now: datetime) -> str | None:
    """The name of the moderator holding this token, or None."""
    digest = token_hash(token)
    with db.read() as conn:
        row = conn.execute(
            sa.select(token_t.c.id, token_t.c.name, token_t.c.last_used_at).where(token_t.c.token_hash == digest)
        ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        with db.write() as conn:
            conn.execute(token_t.update().where(token_t.c.id == row.id).values(last_used_at=now))
    return str(row.name)


# ---- the moderators' web page: sign-in by token hash, sessions by token id -------------


def token_by_hash(db: Database, digest: str, now: datetime) -> dict[str, object] | None:
    """The token (id, name, token_hash) whose hash is digest, marked as used; None if there is none."""
    return _find_token(db, token_t.c.token_hash == digest, now)


def token_by_id(db: Database, token_id: int, now: datetime) -> dict[str, object] | None:
    """The token (id, name, token_hash) with this row id, marked as used; None once it is revoked."""
    return _find_token(db, token_t.c.id == token_id, now)


def _find_token(db: Database, where: sa.ColumnElement[bool], now: datetime) -> dict[str, object] | None:
    with db.read() as conn:
        row = conn.execute(
            sa.select(token_t.c.id, token_t.c.name, token_t.c.token_hash, token_t.c.last_used_at).where(where)
        ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        with db.write() as conn:
            conn.execute(token_t.update().where(token_t.c.id == row.id).values(last_used_at=now))
    return {"id": int(row.id), "name": str(row.name), "token_hash": str(row.token_hash)}
