"""Fill a fresh, migrated database fast for the benchmark, writing rows as the store would.

The benchmark's own seeding path: SQLAlchemy Core batch inserts on the service's tables, with
email addresses encrypted by the database's keyring, lookup hashes from the same keys, bodies
rendered by `comments.sanitize` and anonymised addresses, so the service reads the rows exactly
as if readers had posted them and moderators had approved them.

    read set     200 pages (PAGES) with 30 approved comments each, a third of them replies
    big thread   one page (BIG_PAGE) with 2,000 approved comments (BIG_THREAD)
    filler       the rest up to `size`: older pages of 40 comments in every status
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from bodies import Body, author_name, make_body, website  # noqa: E402

from comments import sanitize, store  # noqa: E402
from comments.db import Database  # noqa: E402
from comments.security import anonymise_ip  # noqa: E402
from comments.store.common import comment_t, page_t  # noqa: E402

PAGES = 200
PER_THREAD = 30
BIG_THREAD = 2000
FILLER_PER_PAGE = 40
BATCH = 5000
BIG_PAGE = "/2024/12/the-long-thread/"


def page_key(i: int) -> str:
    """The key of read-set page i (0 to PAGES-1)."""
    return f"/2024/{i % 12 + 1:02d}/article-{i:03d}/"


@dataclass(frozen=True)
class Seeded:
    """What was written: comment rows in all, the read set's pages, and how long it took."""

    comments: int
    pages: list[str]
    big_page: str
    seconds: float


class _Rows:
    """Builds comment rows with ids assigned here, so replies can name their parents."""

    def __init__(self, db: Database, rng: random.Random, now: datetime) -> None:
        self.ring = db.keyring()
        self.rng = rng
        self.now = now
        self.next_id = 1
        self.next_page = 1
        self.pool: list[tuple[str, str, str, int]] = []

    def pooled(self) -> tuple[str, str, str, int]:
        """A body from a pool of 2,000 rendered ones (filler needs no unique text)."""
        if len(self.pool) < 2000:
            self.pool.append(self._rendered(make_body(self.rng)))
            return self.pool[-1]
        return self.rng.choice(self.pool)

    @staticmethod
    def _rendered(body: Body) -> tuple[str, str, str, int]:
        html = sanitize.render(body.text)
        return body.text, html, store.body_hash(body.text), sanitize.count_links(html)

    def page(self, key: str, created: datetime, approved: bool) -> dict[str, Any]:
        row = {"id": self.next_page, "key": key, "key_hash": hashlib.sha256(key.encode()).hexdigest(),
               "closed": False, "thread_version": 1 if approved else 0, "created_at": created}
        self.next_page += 1
        return row

    def comment(self, page_id: int, parent: int | None, status: str, created: datetime,
                unique_body: bool) -> dict[str, Any]:
        rng = self.rng
        n = self.next_id
        self.next_id += 1
        text, html, digest, _links = self._rendered(make_body(rng)) if unique_body else self.pooled()
        email = f"reader{n}@mail.example"
        url = website(rng)
        ip = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return {
            "id": n, "page_id": page_id, "parent_id": parent, "status": status,
            "author": author_name(rng), "email": self.ring.encrypt(email),
            "email_key": self.ring.lookup("email:" + email.casefold()), "url": url,
            "body": text, "body_html": html, "body_hash": digest, "policy_version": sanitize.POLICY_VERSION,
            "ip": anonymise_ip(ip), "ip_key": None, "personal_until": None, "user_agent": None,
            "spam_score": 0.9 if status == "spam" else round(rng.random() * 0.15, 3),
            "spam_reasons": ["blocked words: casino"] if status == "spam" else [],
            "learned": None, "url_host": store.url_host(url), "created_at": created,
            "updated_at": self._updated(status, created),
        }

    def _updated(self, status: str, created: datetime) -> datetime:
        """Spam and trash were filed lately, so the retention purge (30 days) leaves them alone
        during the run, as it would on a site where the old ones are long gone."""
        if status in ("spam", "trash"):
            return max(created, self.now - timedelta(days=self.rng.uniform(0, 20)))
        return created

    def thread(self, page_id: int, count: int, start: datetime, span: timedelta,
               statuses: Callable[[], str], unique_bodies: bool) -> Iterator[dict[str, Any]]:
        """count comments on one page, oldest first; about a third reply to an earlier approved one."""
        approved: list[int] = []
        step = span / max(count, 1)
        for i in range(count):
            status = statuses()
            parent = self.rng.choice(approved) if approved and self.rng.random() < 0.33 else None
            row = self.comment(page_id, parent, status, start + step * i, unique_bodies)
            if status == "approved":
                approved.append(row["id"])
            yield row


def _filler_status(rng: random.Random) -> str:
    roll = rng.random()
    return "approved" if roll < 0.7 else "pending" if roll < 0.8 else "spam" if roll < 0.95 else "trash"


def seed(db: Database, size: int = 10_000, *, pages: int = PAGES, big_thread: int = BIG_THREAD,
         rng_seed: int = 7, progress: Callable[[int, int], None] | None = None) -> Seeded:
    """Write the read set (`pages` pages of PER_THREAD comments), the big thread and filler up to
    `size` comments into an empty, migrated database."""
    began = time.perf_counter()
    rng = random.Random(rng_seed)
    now = store.utcnow().replace(microsecond=0)
    rows = _Rows(db, rng, now)
    page_rows: list[dict[str, Any]] = []
    batches: list[Iterator[dict[str, Any]]] = []
    always = lambda: "approved"  # noqa: E731

    filler = max(0, size - pages * PER_THREAD - big_thread)
    archive_pages = -(-filler // FILLER_PER_PAGE)
    for i in range(archive_pages):  # oldest first, so ids grow with time as they would
        created = now - timedelta(days=400) + timedelta(seconds=i * 30)
        count = min(FILLER_PER_PAGE, filler - i * FILLER_PER_PAGE)
        page_rows.append(rows.page(f"/archive/{i:06d}/", created, True))
        batches.append(rows.thread(page_rows[-1]["id"], count, created, timedelta(days=3),
                                   lambda: _filler_status(rng), False))
    big = rows.page(BIG_PAGE, now - timedelta(days=40), True)
    page_rows.append(big)
    batches.append(rows.thread(big["id"], big_thread, now - timedelta(days=40), timedelta(days=9), always, False))
    for i in range(pages):
        created = now - timedelta(days=30) + timedelta(minutes=i)
        page_rows.append(rows.page(page_key(i), created, True))
        batches.append(rows.thread(page_rows[-1]["id"], PER_THREAD, created, timedelta(days=20), always, True))

    total = filler + big_thread + pages * PER_THREAD
    written = 0
    with db.write() as conn:
        for start in range(0, len(page_rows), BATCH):
            conn.execute(page_t.insert(), page_rows[start:start + BATCH])
    buffer: list[dict[str, Any]] = []
    for batch in batches:
        for row in batch:
            buffer.append(row)
            if len(buffer) >= BATCH * 4:
                written += _flush(db, buffer)
                buffer = []
                if progress:
                    progress(written, total)
    written += _flush(db, buffer)
    if progress:
        progress(written, total)
    _after_explicit_ids(db)
    return Seeded(written, [page_key(i) for i in range(pages)], BIG_PAGE, time.perf_counter() - began)


def _flush(db: Database, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    with db.write() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(comment_t.insert(), rows[start:start + BATCH])
    return len(rows)


def _after_explicit_ids(db: Database) -> None:
    """PostgreSQL's sequences do not see explicit ids: move them past the rows written here."""
    if db.is_sqlite:
        return  # the service never runs ANALYZE on SQLite, so neither does the benchmark
    with db.write() as conn:
        for table in ("page", "comment"):
            conn.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 1) FROM {table}))"
            ))
        conn.exec_driver_sql("ANALYZE")  # what autovacuum would soon do after a bulk load


def post_pool(count: int, rng_seed: int = 11) -> list[Body]:
    """Bodies for the POST load (the load script makes each one unique)."""
    rng = random.Random(rng_seed)
    return [make_body(rng) for _ in range(count)]
