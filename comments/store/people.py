"""A person's data, found by their email address: export it all, or erase it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..db import Database
from .comments import email_lookups
from . import subscriptions
from .spam import forget_before_edit
from .common import action_t, bump_thread, comment_t, page_t, rate_t, record, reveal

ANONYMOUS = "Anonymous"
ERASED_NOTE = "This comment was removed at its author's request."

_PERSON_COLUMNS = (
    comment_t.c.id, comment_t.c.parent_id, page_t.c.key.label("page"), comment_t.c.status,
    comment_t.c.author, comment_t.c.email, comment_t.c.url, comment_t.c.body, comment_t.c.body_html,
    comment_t.c.ip, comment_t.c.user_agent, comment_t.c.spam_score, comment_t.c.spam_reasons,
    comment_t.c.created_at, comment_t.c.updated_at, comment_t.c.personal_until,
)


def _reference(keys: list[str]) -> str:
    """How the audit log names the person: a prefix of their keyed hash, never the address."""
    return "person " + keys[0][:12]


def export_person(db: Database, email: str, actor: str, now: datetime) -> list[dict[str, Any]]:
    """Every comment by this address with everything stored about it; the export is recorded."""
    keys = email_lookups(db, email)
    with db.write() as conn:
        rows = conn.execute(
            sa.select(*_PERSON_COLUMNS).select_from(comment_t.join(page_t, comment_t.c.page_id == page_t.c.id))
            .where(comment_t.c.email_key.in_(keys)).order_by(comment_t.c.created_at, comment_t.c.id)
        ).all()
        record(conn, now, actor, "export", None, None, f"{_reference(keys)}: {len(rows)} comments")
    items = []
    for row in rows:
        data = row._asdict()
        data["parent"] = data.pop("parent_id")
        data["email"] = reveal(db, data["email"])
        items.append(data)
    return items


def erase_person(
    db: Database, email: str, keep_body: bool, note_html: str, actor: str, now: datetime
) -> int:
    """Anonymise every comment by this address: the name becomes "Anonymous"; email, website,
    address and user agent go; the body stays or is replaced by a note (so replies still read
    sensibly). The personal values in the edit records of those comments are cleared too."""
    keys = email_lookups(db, email)
    with db.write() as conn:
        rows = conn.execute(
            sa.select(comment_t.c.id, comment_t.c.page_id, comment_t.c.status).where(comment_t.c.email_key.in_(keys))
        ).all()
        ids = [row.id for row in rows]
        for comment_id in ids:  # what the model learned from them includes their name and website
            forget_before_edit(conn, comment_id)
        if ids:
            values: dict[str, Any] = {
                "author": ANONYMOUS, "email": "", "email_key": "", "url": None, "ip": None, "ip_key": None,
                "user_agent": None, "personal_until": None, "updated_at": now,
            }
            if not keep_body:
                values.update(body=ERASED_NOTE, body_html=note_html, body_hash="")
            conn.execute(comment_t.update().where(comment_t.c.id.in_(ids)).values(**values))
            conn.execute(
                action_t.update()
                .where(action_t.c.comment_id.in_(ids), action_t.c.action.in_(["edit_author", "edit_url"]))
                .values(from_value=None, to_value=None)
            )
            for page_id in {row.page_id for row in rows if row.status == "approved"}:
                bump_thread(conn, page_id)
        conn.execute(rate_t.delete().where(rate_t.c.key.in_(["email:" + k[:60] for k in keys])))
        subscriptions.forget(conn, keys)  # reply notices: the address and what it watched
        record(conn, now, actor, "erase", None, None,
               f"{_reference(keys)}: {len(ids)} comments, body {'kept' if keep_body else 'replaced'}")
    return len(ids)
