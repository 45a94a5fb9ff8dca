"""Writing comments: create (with the rules, rate limit and flood check), author edits and deletes."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..crypto import Keyring
from ..db import Database
from ..errors import ApiError, not_found, validation_error
from ..models import CommentIn, Rules, Status
from ..moderation import Decision, Draft, SpamVerdict, decide
from ..security import Keys, anonymise_ip
from . import outbox
from .common import bump_thread, comment_t, page_t, rate_t, record, reveal
from .rules import read_rules


@dataclass(frozen=True)
class NewComment:
    """A validated comment with what the handler worked out off the event loop."""

    data: CommentIn
    body_html: str
    policy_version: int
    links: int
    ip: str | None
    user_agent: str | None
    now: datetime
    notify: bool = False  # the author asked for mail about approved replies


def body_hash(body: str) -> str:
    """What duplicate detection compares: the body with white space collapsed, case folded."""
    return hashlib.sha256(" ".join(body.split()).casefold().encode("utf-8")).hexdigest()


def email_lookups(db: Database, email: str) -> list[str]:
    """The keyed hashes an address may be stored under (the newest key's first)."""
    return db.keyring().lookups(_email_lookup_text(email))


def email_lookup(ring: Keyring, email: str) -> str:
    """The keyed hash a new row stores for an address: the first of email_lookups."""
    return ring.lookup(_email_lookup_text(email))


def _email_lookup_text(email: str) -> str:
    return "email:" + email.casefold()


def ip_lookup(db: Database, ip: str) -> str:
    """Keyed hash of a full client address (for the rate limit and, while it is kept, history)."""
    return db.keyring().lookup("ip:" + ip)


def page_key_hash(key: str) -> str:
    """What a page is found by: its key can be too long for an index of its own."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# The statements of the POST path, built once: building and hashing a statement for SQLAlchemy's
# cache cost more than running it, and a new comment's run inside the write lock.
_PAGE = sa.select(page_t.c.id, page_t.c.key, page_t.c.closed, page_t.c.thread_version).where(
    page_t.c.key_hash == sa.bindparam("key_hash"))
_PARENT = sa.select(comment_t.c.page_id, comment_t.c.status).where(comment_t.c.id == sa.bindparam("parent"))
_SAME_COMMENT = sa.select(comment_t.c.id).where(
    comment_t.c.email_key.in_(sa.bindparam("e_keys", expanding=True)),
    comment_t.c.page_id == sa.bindparam("page_id"), comment_t.c.body_hash == sa.bindparam("digest"),
).limit(1)
_RECENT_FROM = (
    sa.select(rate_t.c.created_at)
    .where(rate_t.c.key == sa.bindparam("key"), rate_t.c.created_at > sa.bindparam("since"))
    .order_by(rate_t.c.created_at.desc())
    .limit(sa.bindparam("count"))
)
_LATEST_FROM = sa.select(sa.func.max(rate_t.c.created_at)).where(
    rate_t.c.key.in_(sa.bindparam("keys", expanding=True)), rate_t.c.created_at > sa.bindparam("since"))
_APPROVED_FROM = sa.select(comment_t.c.id).where(
    comment_t.c.email_key.in_(sa.bindparam("e_keys", expanding=True)),
    comment_t.c.status == Status.approved.value, comment_t.c.id != sa.bindparam("other_than"),
).limit(1)
_INSERT = comment_t.insert().returning(comment_t.c.id)
_RATE_INSERT = rate_t.insert()


def page_row(conn: Connection, key: str) -> Any:
    return conn.execute(_PAGE, {"key_hash": page_key_hash(key)}).first()


def ensure_page(conn: Connection, key: str, now: datetime) -> Any:
    row = page_row(conn, key)
    if row is None:
        from .common import insert_ignore

        insert_ignore(conn, page_t, _new_page(key, now), ["key_hash"])
        row = page_row(conn, key)
    return row


def ensure_pages(conn: Connection, keys: list[str], now: datetime) -> dict[str, int]:
    """The ids of these pages, each made as ensure_page would if it does not exist yet (in the
    order given): a few statements for all of them (an importer's batch names dozens)."""
    from .common import insert_ignore

    by_hash = {page_key_hash(key): key for key in keys}
    ids = _page_ids(conn, list(by_hash))
    missing = [digest for digest in by_hash if digest not in ids]
    if missing:
        insert_ignore(conn, page_t, [_new_page(by_hash[digest], now) for digest in missing], ["key_hash"])
        ids.update(_page_ids(conn, missing))
    return {by_hash[digest]: page_id for digest, page_id in ids.items()}


def _page_ids(conn: Connection, digests: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(digests), 500):
        rows = conn.execute(sa.select(page_t.c.key_hash, page_t.c.id).where(
            page_t.c.key_hash.in_(digests[start:start + 500])))
        found.update((digest, page_id) for digest, page_id in rows)
    return found


def _new_page(key: str, now: datetime) -> dict[str, Any]:
    return {"key": key, "key_hash": page_key_hash(key), "closed": False, "thread_version": 0, "created_at": now}


def _lock(conn: Connection, key: str) -> None:
    # SQLite writers are serialised by BEGIN IMMEDIATE; PostgreSQL needs a lock per client key
    # so two workers cannot both pass the rate limit with the same count.
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def _check_rate(conn: Connection, keys: list[str], settings_rate: tuple[int, int], flood: int, now: datetime) -> None:
    count, window = settings_rate
    ip_keys = [k for k in keys if k.startswith("ip:")]
    if ip_keys:
        rows = conn.execute(_RECENT_FROM, {
            "key": ip_keys[0], "since": now - timedelta(seconds=window), "count": count}).all()
        if len(rows) >= count:
            oldest = rows[-1].created_at
            retry = math.ceil((oldest + timedelta(seconds=window) - now).total_seconds())
            raise ApiError(429, "too many comments from this address; try again later",
                           headers={"Retry-After": str(max(1, retry))})
    if flood > 0:
        latest = conn.execute(_LATEST_FROM, {"keys": keys, "since": now - timedelta(seconds=flood)}).scalar()
        if latest is not None:
            retry = math.ceil((latest + timedelta(seconds=flood) - now).total_seconds())
            raise ApiError(429, "you are posting comments too quickly; wait a moment",
                           headers={"Retry-After": str(max(1, retry))})


def _check_parent(conn: Connection, parent: int | None, page_id: int | None) -> None:
    if parent is None:
        return
    row = conn.execute(_PARENT, {"parent": parent}).first()
    if row is None or row.page_id != page_id or row.status != Status.approved.value:
        raise validation_error({"parent": "is not an approved comment on this page"})


def create_comment(
    db: Database, keys: Keys, new: NewComment, spam: SpamVerdict | None = None
) -> dict[str, Any]:
    """Store a new comment after the page, parent, duplicate, rate and flood checks; return it."""
    data, now = new.data, new.now
    e_keys = email_lookups(db, data.email)
    e_key = e_keys[0]
    ip_key = ip_lookup(db, new.ip) if new.ip else None
    rate_keys = ["email:" + e_key[:60]]
    if ip_key:
        rate_keys.insert(0, "ip:" + ip_key[:60])
    days = db.settings.ip_retention_days
    if days:
        stored_ip, user_agent, personal_until = new.ip, new.user_agent, now + timedelta(days=days)
    else:  # anonymised at once; the user agent is not kept at all
        stored_ip, user_agent, personal_until, ip_key = anonymise_ip(new.ip), None, None, None
    digest = body_hash(data.body)
    email, host = db.keyring().encrypt(data.email), url_host(data.url)
    with db.write() as conn:
        _lock(conn, rate_keys[0])
        page = page_row(conn, data.page)
        if page is not None and page.closed:
            raise ApiError(403, "this page is closed for comments", code="closed")
        _check_parent(conn, data.parent, page.id if page else None)
        if page is not None and conn.execute(
                _SAME_COMMENT, {"e_keys": e_keys, "page_id": page.id, "digest": digest}).first():
            raise ApiError(409, "you already left this comment on this page")
        rules = read_rules(conn)
        _check_rate(conn, rate_keys, db.settings.rate, rules.flood_seconds, now)
        known = rules.auto_approve_known_authors and _known_author(conn, e_keys)
        draft = Draft(data.body, data.author, data.email, data.url, stored_ip, new.links)
        decision = decide(draft, rules, known_author=known, spam=with_thresholds(spam, rules))
        if page is None:
            page = ensure_page(conn, data.page, now)
        comment_id = conn.execute(_INSERT, {
            "page_id": page.id, "parent_id": data.parent, "status": decision.status.value,
            "author": data.author, "email": email, "email_key": e_key, "url": data.url,
            "body": data.body, "body_html": new.body_html, "body_hash": digest,
            "policy_version": new.policy_version, "ip": stored_ip, "ip_key": ip_key,
            "personal_until": personal_until, "user_agent": user_agent, "url_host": host,
            "spam_score": decision.score, "spam_reasons": decision.reasons,
            "created_at": now, "updated_at": now,
        }).scalar_one()
        conn.execute(_RATE_INSERT, [{"key": k, "created_at": now} for k in rate_keys])
        outbox.comment_created(conn, db, comment_id, decision.status.value, now, new.notify)  # in this transaction
        if random.random() < 0.01:  # keep the rate table small without a separate job
            horizon = max(db.settings.rate[1], rules.flood_seconds, 60)
            conn.execute(rate_t.delete().where(rate_t.c.created_at < now - timedelta(seconds=horizon)))
        if decision.status is Status.approved:
            bump_thread(conn, page.id)
    return {
        "id": comment_id, "parent": data.parent, "author": data.author, "url": data.url,
        "body_html": new.body_html, "created_at": now, "status": decision.status.value,
        "page": data.page,
    }


def with_thresholds(verdict: SpamVerdict | None, rules: Rules) -> SpamVerdict | None:
    """The filter's score judged by the thresholds in the moderators' rules."""
    if verdict is None:
        return None
    return replace(verdict, spam_threshold=rules.spam_threshold, hold_threshold=rules.hold_threshold)


def url_host(url: str | None) -> str | None:
    """The lower-cased host of an author's website, for the spam history."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.removeprefix("www.")[:255] if host else None


def stored_address(db: Database, ip: str | None) -> str | None:
    """The client address as it will be stored: anonymised unless full addresses are kept for a while."""
    return ip if db.settings.ip_retention_days else anonymise_ip(ip)


def _known_author(conn: Connection, e_keys: list[str], other_than: int | None = None) -> bool:
    """Whether this email (any of its lookup keys) has an approved comment, other than `other_than`."""
    # Ids start at 1: "other than 0" leaves none out.
    found = conn.execute(_APPROVED_FROM, {"e_keys": e_keys, "other_than": 0 if other_than is None else other_than})
    return found.first() is not None


# ---- author edits ---------------------------------------------------------------------

_AUTHOR_COLUMNS = (
    comment_t.c.id, comment_t.c.parent_id, comment_t.c.status, comment_t.c.author,
    comment_t.c.email, comment_t.c.url, comment_t.c.body_html, comment_t.c.created_at,
    comment_t.c.page_id, comment_t.c.ip, comment_t.c.body, comment_t.c.spam_score,
    comment_t.c.spam_reasons, comment_t.c.learned,
)
# How strict a status is, for edits that may only keep or tighten a verdict.
SEVERITY = {Status.approved.value: 0, Status.pending.value: 1, Status.spam.value: 2, Status.trash.value: 2}


def author_status(status: str) -> str:
    """What the author is told: a comment filed as spam looks just like a held one."""
    return Status.pending.value if status == Status.spam.value else status


def _authorised(conn: Connection, keys: Keys, comment_id: int, token: str | None, now: datetime) -> tuple[Any, Rules]:
    row = conn.execute(sa.select(*_AUTHOR_COLUMNS).where(comment_t.c.id == comment_id)).first()
    if row is None or row.status == Status.trash.value:
        raise not_found()
    rules = read_rules(conn)
    if not keys.check_edit_token(comment_id, token):
        raise ApiError(403, "this edit token does not belong to this comment")
    if now - row.created_at > timedelta(seconds=rules.edit_window_seconds):
        raise ApiError(403, "the time to edit this comment has run out")
    return row, rules


def author_view(db: Database, keys: Keys, comment_id: int, token: str, now: datetime) -> dict[str, Any]:
    """The comment as its author sees it within the edit window (pending included)."""
    with db.read() as conn:
        row, _ = _authorised(conn, keys, comment_id, token, now)
        return _author_dict(conn, row)


def _author_dict(conn: Connection, row: Any) -> dict[str, Any]:
    from .threads import effective_parent

    return {
        "id": row.id, "parent": effective_parent(conn, row.parent_id), "author": row.author,
        "url": row.url, "body_html": row.body_html, "created_at": row.created_at,
        "status": author_status(row.status), "body": row.body,
    }


Judge = Callable[[str, str, "str | None", str, str], SpamVerdict]  # email, author, url, page, body


def author_edit(
    db: Database, keys: Keys, comment_id: int, token: str | None, body: str, body_html: str,
    policy_version: int, links: int, now: datetime, judge: Judge | None = None,
) -> dict[str, Any]:
    """Change the body; it is judged again by the rules and the spam filter, as a new comment would
    be. An edit can make the verdict stricter, never milder: a held comment stays held and one filed
    as spam (by the filter or a moderator) stays spam, so editing cannot launder a comment."""
    from .spam import forget_before_edit, learn_verdict

    with db.write() as conn:
        row, rules = _authorised(conn, keys, comment_id, token, now)
        email = reveal(db, row.email)
        page = conn.execute(sa.select(page_t.c.key).where(page_t.c.id == row.page_id)).scalar_one()
        known = rules.auto_approve_known_authors and _known_author(conn, email_lookups(db, email), row.id)
        draft = Draft(body, row.author, email, row.url, row.ip, links)
        verdict = judge(email, row.author, row.url, page, body) if judge else None
        decision: Decision = decide(draft, rules, known_author=known, spam=with_thresholds(verdict, rules))
        status, score, reasons = decision.status.value, decision.score, decision.reasons
        if SEVERITY[row.status] > SEVERITY[status]:
            status = row.status
            score = max(score, row.spam_score)
            reasons = list(dict.fromkeys([*row.spam_reasons, *reasons]))
        learned = row.learned
        forget_before_edit(conn, comment_id)
        conn.execute(
            comment_t.update().where(comment_t.c.id == comment_id).values(
                body=body, body_html=body_html, body_hash=body_hash(body), policy_version=policy_version,
                status=status, spam_score=score, spam_reasons=reasons, updated_at=now,
            )
        )
        if learned == "spam" and status == Status.spam.value:
            learn_verdict(conn, comment_id, status)  # the moderator's verdict stands for the new text
        record(conn, now, "author", "author_edit", comment_id, row.status, status)
        if Status.approved.value in (row.status, status):
            bump_thread(conn, row.page_id)
        fresh = conn.execute(sa.select(*_AUTHOR_COLUMNS).where(comment_t.c.id == comment_id)).one()
        return _author_dict(conn, fresh)


def author_delete(db: Database, keys: Keys, comment_id: int, token: str | None, now: datetime) -> None:
    with db.write() as conn:
        row, _ = _authorised(conn, keys, comment_id, token, now)
        delete_comment_in(conn, row, "author", now)


def delete_comment_in(conn: Connection, row: Any, actor: str, now: datetime) -> None:
    """Delete for good; replies are re-attached to the deleted comment's parent (as it is now:
    the parent may itself have been deleted earlier in the same transaction)."""
    parent_id = conn.execute(sa.select(comment_t.c.parent_id).where(comment_t.c.id == row.id)).scalar()
    conn.execute(
        comment_t.update().where(comment_t.c.parent_id == row.id).values(parent_id=parent_id)
    )
    conn.execute(comment_t.delete().where(comment_t.c.id == row.id))
    record(conn, now, actor, "delete", row.id, row.status, None)
    outbox.comment_deleted(conn, row, now)
    if row.status == Status.approved.value:
        bump_thread(conn, row.page_id)
