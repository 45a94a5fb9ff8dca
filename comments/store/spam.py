"""The spam filter's memory: the text model's counts, learning from verdicts, and the evidence a new comment is judged on."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .. import spam
from ..db import Database
from ..models import SpamFeature, SpamTotals, Status
from .comments import page_key_hash
from .common import comment_t, page_t

feature_t: sa.Table = SpamFeature.__table__  # type: ignore[attr-defined]
totals_t: sa.Table = SpamTotals.__table__  # type: ignore[attr-defined]

DUPLICATE_MINUTES = 60
# The statements on the POST path are built once: SQLAlchemy then finds their compiled form in
# its cache without building and hashing a new statement for every comment.
_TOTALS = sa.select(totals_t.c.spam_docs, totals_t.c.ham_docs).where(totals_t.c.id == 1)
#: The counts query goes to the driver as it is: with a comment's hundreds of features, expanding
#: the list through SQLAlchemy cost more than the lookups. On SQLite the list is padded (with one
#: of its own features) to a multiple of this, so the query has a few shapes rather than one per
#: length, and the driver keeps each prepared; PostgreSQL takes the list as one array.
_COUNTS_STEP = 50
_PG_COUNTS = f"SELECT feature, spam, ham FROM {feature_t.name} WHERE feature = ANY(%s)"
_DUPLICATE_PAGES = (
    sa.select(sa.func.count(sa.distinct(comment_t.c.page_id)))
    .select_from(comment_t.join(page_t, comment_t.c.page_id == page_t.c.id))
    .where(comment_t.c.body_hash == sa.bindparam("body_hash"), page_t.c.key_hash != sa.bindparam("page_hash"),
           comment_t.c.created_at > sa.bindparam("since"))
)
LABELS = {Status.spam.value: "spam", Status.approved.value: "ham"}


@dataclass(frozen=True)
class Evidence:
    """What the database knows that bears on a new comment."""

    model: spam.TextModel
    spam_history: int
    approved_history: int
    duplicate_pages: int


def evidence(
    db: Database, feats: Sequence[str], email_keys: Sequence[str], url_host: str | None,
    ip_key: str | None, body_hash: str, page: str, now: datetime,
) -> Evidence:
    """The model's counts for these features, the author's history, and the same text elsewhere."""
    with db.read() as conn:
        totals = conn.execute(_TOTALS).first()
        counts = _counts(conn, feats) if totals is not None and feats else {}
        history: dict[str, int] = dict(conn.execute(_history(bool(url_host), bool(ip_key)), {
            "email_keys": list(email_keys), "url_host": url_host, "ip_key": ip_key}).all())
        pages = conn.execute(_DUPLICATE_PAGES, {
            "body_hash": body_hash, "page_hash": page_key_hash(page),
            "since": now - timedelta(minutes=DUPLICATE_MINUTES)}).scalar_one()
    model = spam.TextModel(totals.spam_docs if totals else 0, totals.ham_docs if totals else 0, counts)
    return Evidence(model, int(history.get("spam", 0)), int(history.get("ham", 0)), int(pages) + 1)


def _counts(conn: Connection, feats: Sequence[str]) -> dict[str, tuple[int, int]]:
    """The model's (spam, ham) counts of these features, those it has."""
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(_PG_COUNTS, (list(feats),))
    else:
        padded = list(feats)
        padded += padded[-1:] * (-len(padded) % _COUNTS_STEP)
        result = conn.exec_driver_sql(_sqlite_counts(len(padded)), tuple(padded))
    return {feature: (spam_count, ham_count) for feature, spam_count, ham_count in result.all()}


@functools.cache
def _sqlite_counts(size: int) -> str:
    return f"SELECT feature, spam, ham FROM {feature_t.name} WHERE feature IN ({', '.join('?' * size)})"


@functools.cache
def _history(by_url: bool, by_ip: bool) -> sa.Select[Any]:
    """How often the author's email (any of its lookup keys), website host or, only while full
    addresses are kept, address was marked spam or approved by a moderator: one statement per
    combination of what is known."""
    who: list[sa.ColumnElement[bool]] = [comment_t.c.email_key.in_(sa.bindparam("email_keys", expanding=True))]
    if by_url:
        who.append(comment_t.c.url_host == sa.bindparam("url_host"))
    if by_ip:  # an anonymised /24 is many people
        who.append(comment_t.c.ip_key == sa.bindparam("ip_key"))
    return (sa.select(comment_t.c.learned, sa.func.count())
            .where(sa.or_(*who), comment_t.c.learned.is_not(None)).group_by(comment_t.c.learned))


def apply_deltas(conn: Connection, deltas: Iterable[spam.CountDelta]) -> None:
    """Add learned (or unlearned) counts in one go: merged per feature, then upserted."""
    merged: dict[str, list[int]] = {}
    spam_docs = ham_docs = 0
    for delta in deltas:
        spam_docs += delta.spam_docs
        ham_docs += delta.ham_docs
        for feature, ds, dh in delta.rows:
            pair = merged.setdefault(feature, [0, 0])
            pair[0] += ds
            pair[1] += dh
    if not merged and not spam_docs and not ham_docs:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    rows = [{"feature": f, "spam": max(s, 0), "ham": max(h, 0), "ds": s, "dh": h}
            for f, (s, h) in sorted(merged.items())]  # a fixed order: no lock-order deadlocks
    if rows:
        stmt = dialect.insert(feature_t).values(feature=sa.bindparam("feature"), spam=sa.bindparam("spam"),
                                                 ham=sa.bindparam("ham"))
        stmt = stmt.on_conflict_do_update(index_elements=["feature"], set_={
            "spam": sa.func.max(feature_t.c.spam + sa.bindparam("ds"), 0) if conn.dialect.name == "sqlite"
            else sa.func.greatest(feature_t.c.spam + sa.bindparam("ds"), 0),
            "ham": sa.func.max(feature_t.c.ham + sa.bindparam("dh"), 0) if conn.dialect.name == "sqlite"
            else sa.func.greatest(feature_t.c.ham + sa.bindparam("dh"), 0),
        })
        for start in range(0, len(rows), 5000):
            conn.execute(stmt, rows[start:start + 5000])
        if any(s < 0 or h < 0 for _, (s, h) in merged.items()):
            conn.execute(feature_t.delete().where(feature_t.c.spam == 0, feature_t.c.ham == 0,
                                                  feature_t.c.feature.in_(list(merged))))
    totals = dialect.insert(totals_t).values(id=1, spam_docs=max(spam_docs, 0), ham_docs=max(ham_docs, 0))
    conn.execute(totals.on_conflict_do_update(index_elements=["id"], set_={
        "spam_docs": totals_t.c.spam_docs + spam_docs, "ham_docs": totals_t.c.ham_docs + ham_docs}))


def _features(row: Any) -> list[str]:
    return spam.features(row.body, row.author, row.url)


def learn_verdict(conn: Connection, comment_id: int, new_status: str) -> None:
    """A moderator moved a comment: to spam teaches spam, to approved teaches not-spam; a reversed
    verdict is unlearned first. Other moves (pending, trash) teach nothing."""
    learn_verdicts(conn, [(comment_id, new_status)])


def learn_verdicts(conn: Connection, verdicts: Sequence[tuple[int, str]]) -> None:
    """learn_verdict for many comments, with the model's counts changed in one go (a bulk action
    touches each shared feature row once, in a fixed order, so concurrent bulks do not queue long)."""
    wanted = {comment_id: LABELS[status] for comment_id, status in verdicts if status in LABELS}
    if not wanted:
        return
    rows = conn.execute(sa.select(comment_t.c.id, comment_t.c.body, comment_t.c.author, comment_t.c.url,
                                  comment_t.c.learned).where(comment_t.c.id.in_(list(wanted)))).all()
    deltas = []
    changed: dict[str, list[int]] = {}
    for row in rows:
        label = wanted[row.id]
        if row.learned == label:
            continue
        feats = _features(row)
        deltas.append(spam.learn_delta(feats, label == "spam"))
        if row.learned is not None:
            deltas.append(spam.learn_delta(feats, row.learned == "spam", sign=-1))
        changed.setdefault(label, []).append(row.id)
    apply_deltas(conn, deltas)
    for label, ids in changed.items():
        conn.execute(comment_t.update().where(comment_t.c.id.in_(ids)).values(learned=label))


def forget_before_edit(conn: Connection, comment_id: int) -> None:
    """The text the model learned from is about to change: unlearn it (the next verdict teaches anew)."""
    row = conn.execute(sa.select(comment_t.c.body, comment_t.c.author, comment_t.c.url, comment_t.c.learned)
                       .where(comment_t.c.id == comment_id)).first()
    if row is None or row.learned is None:
        return
    apply_deltas(conn, [spam.learn_delta(_features(row), row.learned == "spam", sign=-1)])
    conn.execute(comment_t.update().where(comment_t.c.id == comment_id).values(learned=None))


def train(db: Database, examples: Iterable[tuple[str, str, str | None, bool]],
          progress: Callable[[int], None] | None = None, batch: int = 500) -> int:
    """Learn labelled (body, author, url, is_spam) examples as if moderators had judged them, in
    one transaction: a failure part-way changes nothing."""
    done = 0
    with db.write() as conn:
        pending: list[spam.CountDelta] = []
        for body, author, url, is_spam in examples:
            pending.append(spam.learn_delta(spam.features(body, author, url), is_spam))
            done += 1
            if len(pending) >= batch:
                apply_deltas(conn, pending)
                pending = []
                if progress:
                    progress(done)
        apply_deltas(conn, pending)
        if progress:
            progress(done)
    return done


def prune(db: Database, cap: int = spam.DEFAULT_VOCABULARY_CAP) -> int:
    """Keep the vocabulary under its cap by dropping the rarest features."""
    with db.read() as conn:
        size = conn.execute(sa.select(sa.func.count()).select_from(feature_t)).scalar_one()
    if size <= cap:
        return 0
    with db.write() as conn:
        rows = conn.execute(sa.select(feature_t.c.feature, feature_t.c.spam, feature_t.c.ham))
        level = spam.prune_level(((r.feature, r.spam, r.ham) for r in rows), cap)
        return int(conn.execute(feature_t.delete().where(feature_t.c.spam + feature_t.c.ham <= level)).rowcount)
