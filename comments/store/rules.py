"""The moderation rules row: read with defaults, replaced whole by moderators."""

from __future__ import annotations

from datetime import datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import Database
from ..models import Rules
from .common import record, rules_t

_FIELDS = list(Rules.model_fields)
_READ = sa.select(*[rules_t.c[f] for f in _FIELDS]).where(rules_t.c.id == 1)


def read_rules(conn: Connection) -> Rules:
    """The rules in force (the defaults until a moderator saves some)."""
    row = conn.execute(_READ).first()
    return Rules() if row is None else Rules(**row._asdict())


def get_rules(db: Database) -> Rules:
    with db.read() as conn:
        return read_rules(conn)


def put_rules(db: Database, rules: Rules, actor: str, now: datetime) -> Rules:
    """Replace the whole set, and record the change."""
    values = {**rules.model_dump(), "updated_at": now}
    with db.write() as conn:
        before = read_rules(conn)
        if conn.execute(rules_t.update().where(rules_t.c.id == 1).values(**values)).rowcount == 0:
            conn.execute(rules_t.insert().values(id=1, **values))
        record(
            conn, now, actor, "rules",
            from_value=orjson.dumps(before.model_dump()).decode(),
            to_value=orjson.dumps(rules.model_dump()).decode(),
        )
    return rules
