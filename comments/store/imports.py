"""Writing imported comments in batches: idempotent by origin, parents linked where they can be.

The work is split in two. A RowMaker turns a rendered comment into the values of its row
(encrypted address, lookup hash, body hash, address anonymised as the retention says). A
Writer inserts those rows, a batch per transaction, with one executemany through the driver.
The importer runs both in its worker processes, the writes one batch at a time, in file order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from ..crypto import Keyring
from ..db import Database
from ..security import anonymise_ip
from .comments import body_hash, email_lookup, ensure_pages, url_host
from .common import bump_thread, comment_t, record

#: A comment's values as a RowMaker makes them, in this order; the writer puts the page's id
#: in front. parent_key becomes parent_id when the parent is already stored, origin_parent_key
#: when it is not.
ROW_FIELDS = (
    "status", "author", "email", "email_key", "url", "url_host", "body", "body_html", "body_hash",
    "policy_version", "ip", "personal_until", "user_agent", "created_at", "updated_at", "origin_key", "parent_key",
)
Row = tuple[Any, ...]
#: What a RowMaker gives the writer: the page's key (the writer knows the page ids), and the row.
PreparedRow = tuple[str, Row]

_STATUS = ROW_FIELDS.index("status")
_KEY = ROW_FIELDS.index("origin_key")
#: The SQLite page cache of an importing connection, in KiB (the default is 2 MiB): a batch
#: touches most pages of the indexes on random keys (origin, email and body hashes), and each
#: is read once rather than again and again. Each worker has one: 8 MiB was about as fast as
#: 32 MiB (64 MiB no faster), and costs less memory.
SQLITE_CACHE_KIB = 8 * 1024
#: The pages an importing connection lets the write-ahead log grow to before it copies them
#: into the database file (SQLite's default is 1,000). Each batch dirties pages all over the
#: indexes on random keys; a checkpoint after every batch wrote most of them again each time,
#: and one after several batches writes each page once for all of them.
SQLITE_CHECKPOINT_PAGES = 20_000
#: Origin keys looked up per query (SQLite's oldest limit on parameters is 999).
_LOOKUP_CHUNK = 900


def origin_key(origin: str, source: str, origin_id: str) -> str:
    """The stable identity of a comment from another system (kept so a second import changes nothing)."""
    return hashlib.sha256(f"{origin}\0{source}\0{origin_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """An imported comment, checked and rendered, ready to be written."""

    key: str
    parent_key: str | None
    page: str
    status: str
    created_at: datetime
    author: str
    email: str
    url: str | None
    ip: str | None
    user_agent: str | None
    body: str
    body_html: str
    policy_version: int


@dataclass(frozen=True)
class RowMaker:
    """Turns a Prepared comment into its row, as a new comment's would be stored.

    Built once per import in the importing process. Worker processes get it by fork, so
    the email keys never travel through a pipe, a log or a command line.
    """

    ring: Keyring
    keep_days: int  # the IP retention: 0 keeps only the anonymised address, and no user agent
    stamp: Callable[[datetime | None], Any]  # a datetime as the database driver takes it
    updated_at: Any  # the import's time, stamped

    def __call__(self, item: Prepared) -> PreparedRow:
        keep = self.keep_days
        personal_until = item.created_at + timedelta(days=keep) if keep and item.ip else None
        return item.page, (
            item.status, item.author,
            self.ring.encrypt(item.email) if item.email else "",
            email_lookup(self.ring, item.email) if item.email else "",
            item.url, url_host(item.url), item.body, item.body_html, body_hash(item.body), item.policy_version,
            item.ip if keep else anonymise_ip(item.ip), self.stamp(personal_until),
            item.user_agent if keep else None, self.stamp(item.created_at), self.updated_at,
            item.key, item.parent_key,
        )


def row_maker(db: Database, now: datetime) -> RowMaker:
    """The RowMaker of an import into this database (the keyring is checked here, once)."""
    dialect = db.engine.dialect
    process = comment_t.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp: Callable[[datetime | None], Any] = process if process is not None else _same
    return RowMaker(ring=db.keyring(), keep_days=db.settings.ip_retention_days, stamp=stamp, updated_at=stamp(now))


def _same(value: datetime | None) -> datetime | None:
    return value


def present(db: Database, keys: list[str]) -> set[str]:
    """Which of these origin keys are already in the database."""
    if not keys:
        return set()
    with db.read() as conn:
        return _present(conn, keys)


def _present(conn: Connection, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start:start + _LOOKUP_CHUNK]
        found.update(conn.execute(
            sa.select(comment_t.c.origin_key).where(comment_t.c.origin_key.in_(chunk))).scalars())
    return found


@contextmanager
def writer(db: Database, now: datetime) -> Iterator[Writer]:
    """A Writer on a connection of its own, for a whole import (or a worker's share of it),
    closed at the end rather than handed back to the pool: on SQLite it has a larger page
    cache and checkpoints less often, and an importer's worker process ends with no
    connection left open."""
    with db.engine.connect() as conn:
        conn.detach()
        if db.is_sqlite:
            conn.exec_driver_sql(f"PRAGMA cache_size = -{int(SQLITE_CACHE_KIB)}")
            conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {int(SQLITE_CHECKPOINT_PAGES)}")
            conn.commit()
        yield Writer(conn.execution_options(immediate=True), now)


class Writer:
    """Inserts batches of prepared rows, each batch in one transaction, with one executemany
    through the driver: no per-row work in SQLAlchemy."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.sql, self._arrange = _insert_statement(conn.dialect)

    def write(self, batch: list[PreparedRow]) -> tuple[int, int]:
        """Insert the comments not yet present, in one transaction: (imported, already present)."""
        if not batch:
            return 0, 0
        with self.conn.begin():
            existing = _present(self.conn, [row[_KEY] for _, row in batch])
            new_pages = dict.fromkeys(page for page, row in batch if row[_KEY] not in existing)  # in file order
            pages = ensure_pages(self.conn, list(new_pages), self.now)
            parameters: list[Any] = []
            touched: set[int] = set()
            seen: set[str] = set()
            for page, row in batch:
                key = row[_KEY]
                if key in existing or key in seen:
                    continue
                seen.add(key)
                page_id = pages[page]
                if row[_STATUS] == "approved":
                    touched.add(page_id)
                parameters.append(self._arrange((page_id, *row)))
            if parameters:
                self.conn.exec_driver_sql(self.sql, parameters)
                link_parents(self.conn)
                for page_id in touched:
                    bump_thread(self.conn, page_id)
        return len(parameters), len(batch) - len(parameters)


def _insert_statement(dialect: Dialect) -> tuple[str, Callable[[Row], Any]]:
    """The INSERT for one row, as the driver takes it, and what turns (page_id, *row) into its
    parameters. A reply whose parent is stored already (earlier in the batch too: each row of
    an executemany sees the ones before it) gets its parent_id here, on the same page only;
    the others keep the parent's origin key for link_parents."""
    parent = comment_t.alias("parent")

    def found() -> Any:
        return (sa.select(parent.c.id)
                .where(parent.c.origin_key == sa.bindparam("v_parent_key"),
                       parent.c.page_id == sa.bindparam("v_page_id"))
                .scalar_subquery())

    names = ("page_id", *ROW_FIELDS)
    # Parameters are named v_<field>: SQLAlchemy keeps the columns' own names for itself.
    values: dict[str, Any] = {name: sa.bindparam(f"v_{name}") for name in names if name != "parent_key"}
    values.update(
        parent_id=found(),
        origin_parent_key=sa.case((found().is_(None), sa.bindparam("v_parent_key"))),
        spam_score=sa.literal_column("0.0"),
        spam_reasons=sa.literal_column("'[]'"),  # JSON text: PostgreSQL casts the literal to json
    )
    compiled = cast(SQLCompiler, comment_t.insert().values(values).compile(dialect=dialect))
    index = {f"v_{name}": position for position, name in enumerate(names)}
    if compiled.positiontup is not None:  # positional (SQLite's "?"): a tuple in placeholder order
        return compiled.string, itemgetter(*(index[name] for name in compiled.positiontup))
    return compiled.string, lambda row: dict(zip(index, row))


def link_parents(conn: Connection) -> int:
    """Link every imported comment whose parent has arrived (earlier in the file or in the database)
    on the same page: a parent on another page is no parent (finish() makes such replies top level).
    Only the rows waiting for a parent are visited (found through their index)."""
    parent = comment_t.alias("parent")
    waiting = comment_t.alias("waiting")
    found = (sa.select(parent.c.id).where(parent.c.origin_key == comment_t.c.origin_parent_key,
                                          parent.c.page_id == comment_t.c.page_id)
             .scalar_subquery())
    return int(conn.execute(
        comment_t.update()
        .where(comment_t.c.id.in_(sa.select(waiting.c.id).where(waiting.c.origin_parent_key.is_not(None))),
               sa.exists(found))
        .values(parent_id=found, origin_parent_key=None)
    ).rowcount)


def orphans(db: Database) -> int:
    """Imported replies waiting at the top level for a parent no import has brought yet."""
    with db.read() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(comment_t).where(comment_t.c.origin_parent_key.is_not(None))
        ).scalar_one())


def finish(db: Database, actor: str, summary: str, now: datetime, waiting_before: int = 0) -> int:
    """After the last batch: replies whose parent is still missing stay at the top level, counted
    as re-parented; they keep their parent's origin, so a later import that brings it links them.
    The import is recorded in the audit log."""
    with db.write() as conn:
        link_parents(conn)
        waiting = int(conn.execute(
            sa.select(sa.func.count()).select_from(comment_t).where(comment_t.c.origin_parent_key.is_not(None))
        ).scalar_one())
        added = max(0, waiting - waiting_before)
        record(conn, now, actor, "import", None, None, f"{summary}; {added} re-parented")
    return added
