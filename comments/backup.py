"""Moving out: a complete, versioned JSON Lines backup and its exact restore, and a WordPress (WXR) export."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any
from xml.sax.saxutils import escape

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from . import __version__
from .db import Database, current_revision
from .store.common import comment_t, page_t, reveal

FORMAT = "comments-backup"
VERSION = 1
# Secrets (the service's own, moderator tokens, webhook signing secrets: webhooks are registered
# again after a restore) and short-lived working state stay out of every backup.
EXCLUDED = {"secret", "moderator_token", "lease", "rate_event", "webhook"}
BATCH = 2000
# What XML 1.0 cannot hold: a stored text may have U+FFFE or U+FFFF (the forms let them through).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Progress = Callable[[str, int], None]


class BackupError(Exception):
    """The backup file cannot be restored here; the message says why. Nothing was written."""


def tables() -> list[sa.Table]:
    """The tables a backup holds, parents before children."""
    return [t for t in SQLModel.metadata.sorted_tables if t.name not in EXCLUDED]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """A read transaction that sees every table as of one moment, while the service keeps writing:
    SQLite's read transactions do; PostgreSQL's default (READ COMMITTED) gives each query its own."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def export_backup(db: Database, out: IO[bytes], progress: Progress | None = None) -> dict[str, int]:
    """Write every row of every table (emails as stored: encrypted) as JSON Lines; returns counts."""
    counts: dict[str, int] = {}
    header = {"format": FORMAT, "version": VERSION, "schema": current_revision(db.engine),
              "software": __version__, "tables": [str(t.name) for t in tables()]}
    out.write(orjson.dumps(header) + b"\n")
    with _snapshot(db) as conn:
        for table in tables():
            n = 0
            key = list(table.primary_key.columns)
            for row in conn.execution_options(yield_per=BATCH).execute(sa.select(table).order_by(*key)):
                data = {k: _encode(v) for k, v in row._mapping.items()}
                out.write(orjson.dumps({"t": str(table.name), "r": data}) + b"\n")
                n += 1
                if progress and n % BATCH == 0:
                    progress(table.name, n)
            counts[str(table.name)] = n
    out.write(orjson.dumps({"end": counts}) + b"\n")
    return counts


def _lines(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise BackupError(f"line {number}: not JSON") from None
        if not isinstance(data, dict):
            raise BackupError(f"line {number}: not a JSON object")
        yield number, data


def _decode(table: sa.Table, data: dict[str, Any], number: int) -> dict[str, Any]:
    row = {}
    for name, value in data.items():
        if name not in table.c:
            raise BackupError(f"line {number}: table {table.name} has no column {name!r}")
        if value is not None and isinstance(table.c[name].type, sa.DateTime):
            try:
                value = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise BackupError(f"line {number}: {table.name}.{name} is not a time") from None
        row[name] = value
    return row


def restore_backup(db: Database, source: IO[bytes], progress: Progress | None = None) -> dict[str, int]:
    """Restore a backup into an empty database, exactly, in one transaction (all or nothing)."""
    known = {t.name: t for t in tables()}
    lines = _lines(source)
    try:
        _, header = next(lines)
    except StopIteration:
        raise BackupError("the file is empty") from None
    if header.get("format") != FORMAT:
        raise BackupError("not a comments backup (made by `comments export`)")
    if header.get("version") != VERSION:
        raise BackupError(f"backup format version {header.get('version')} is not {VERSION}")
    if header.get("schema") != current_revision(db.engine):
        raise BackupError(f"the backup is of schema {header.get('schema')}, this database is at "
                          f"{current_revision(db.engine)}: restore with the same version of comments")
    counts: dict[str, int] = dict.fromkeys(known, 0)
    ended = None
    try:
        with db.write() as conn:
            for table in known.values():
                if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                    raise BackupError(f"the database is not empty (table {table.name} has rows): restore into "
                                      "a fresh database")
            pending: dict[str, list[dict[str, Any]]] = {}
            parents: list[dict[str, int]] = []
            for number, data in lines:
                if "end" in data:
                    ended = data["end"]
                    continue
                into = known.get(data.get("t", ""))
                if into is None or not isinstance(data.get("r"), dict):
                    raise BackupError(f"line {number}: not a row of a known table")
                pending.setdefault(into.name, []).append(_decode(into, data["r"], number))
                if len(pending[into.name]) >= BATCH:
                    _flush(conn, known, pending, counts, parents, progress)
            _flush(conn, known, pending, counts, parents, progress)
            # Once every comment is in: an imported reply may have a smaller id than its parent.
            if parents:
                conn.execute(comment_t.update().where(comment_t.c.id == sa.bindparam("reply"))
                             .values(parent_id=sa.bindparam("parent")), parents)
            if ended is None:
                raise BackupError("the file is cut short (no end line): nothing was restored")
            if {k: v for k, v in ended.items()} != {k: counts.get(k, 0) for k in ended}:
                raise BackupError("the row counts do not match the end line: nothing was restored")
            if conn.dialect.name == "postgresql":
                for table in known.values():
                    key = list(table.primary_key.columns)
                    if len(key) == 1 and isinstance(key[0].type, sa.Integer):
                        conn.execute(sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{key[0].name}'), "
                            f"COALESCE((SELECT MAX({key[0].name}) FROM {table.name}), 0) + 1, false)"))
    except sa.exc.StatementError as exc:
        if isinstance(exc, sa.exc.OperationalError):
            raise  # the database does not answer: not the file's fault
        raise BackupError(f"the rows do not fit together or this database ({type(exc).__name__}): "
                          "nothing was restored") from None
    return counts


def _flush(conn: Any, known: dict[str, sa.Table], pending: dict[str, list[dict[str, Any]]],
           counts: dict[str, int], parents: list[dict[str, int]], progress: Progress | None) -> None:
    # Parents first: a batch of comments may refer to a page in an earlier batch. Comments go in
    # without their parent, noted in parents for the caller to set once all comments are in.
    for name in [t.name for t in known.values()]:
        rows = pending.pop(name, [])
        if not rows:
            continue
        if name == "comment":
            parents += [{"reply": r["id"], "parent": r["parent_id"]} for r in rows if r.get("parent_id")]
            conn.execute(known[name].insert(), [{**r, "parent_id": None} for r in rows])
        else:
            conn.execute(known[name].insert(), rows)
        counts[name] += len(rows)
        if progress:
            progress(name, counts[name])


def export_wxr(db: Database, out: IO[bytes], site: str, progress: Progress | None = None) -> int:
    """A WordPress export (WXR 1.2) of every page and comment. It holds email addresses in clear,
    because WordPress needs them: keep the file as safe as the readers' data deserves."""
    site = site.rstrip("/")
    write = out.write
    write(b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
          b'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
          b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wp="http://wordpress.org/export/1.2/">\n'
          b"<channel>\n<wp:wxr_version>1.2</wp:wxr_version>\n")
    write(f"<link>{_text(site)}</link>\n<wp:base_site_url>{_text(site)}</wp:base_site_url>\n".encode())
    statuses = {"approved": "1", "pending": "0", "spam": "spam", "trash": "trash"}
    total = 0
    with _snapshot(db) as conn:
        pages = conn.execute(sa.select(page_t.c.id, page_t.c.key, page_t.c.closed).order_by(page_t.c.id)).all()
        for post_id, page in enumerate(pages, 1):
            link = site + (page.key if page.key.startswith("/") else "/" + page.key)
            write(f"<item>\n<title>{_text(page.key)}</title>\n<link>{_text(link)}</link>\n"
                  f"<guid isPermaLink=\"false\">{_text(link)}</guid>\n<wp:post_id>{post_id}</wp:post_id>\n"
                  f"<wp:post_type>post</wp:post_type>\n<wp:status>publish</wp:status>\n"
                  f"<wp:comment_status>{'closed' if page.closed else 'open'}</wp:comment_status>\n".encode())
            rows = conn.execute(sa.select(comment_t).where(comment_t.c.page_id == page.id).order_by(comment_t.c.id))
            for row in rows:
                date = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
                email = reveal(db, row.email) if row.email else ""
                write(("<wp:comment>\n"
                       f"<wp:comment_id>{row.id}</wp:comment_id>\n"
                       f"<wp:comment_author><![CDATA[{_cdata(row.author)}]]></wp:comment_author>\n"
                       f"<wp:comment_author_email>{_text(email)}</wp:comment_author_email>\n"
                       f"<wp:comment_author_url>{_text(row.url or '')}</wp:comment_author_url>\n"
                       f"<wp:comment_author_IP>{_text(row.ip or '')}</wp:comment_author_IP>\n"
                       f"<wp:comment_agent>{_text(row.user_agent or '')}</wp:comment_agent>\n"
                       f"<wp:comment_date>{date}</wp:comment_date>\n"
                       f"<wp:comment_date_gmt>{date}</wp:comment_date_gmt>\n"
                       f"<wp:comment_content><![CDATA[{_cdata(row.body)}]]></wp:comment_content>\n"
                       f"<wp:comment_approved>{statuses.get(row.status, '0')}</wp:comment_approved>\n"
                       f"<wp:comment_type>comment</wp:comment_type>\n"
                       f"<wp:comment_parent>{row.parent_id or 0}</wp:comment_parent>\n"
                       "</wp:comment>\n").encode())
                total += 1
                if progress and total % BATCH == 0:
                    progress("comments", total)
            write(b"</item>\n")
    write(b"</channel>\n</rss>\n")
    return total


def _cdata(text: str) -> str:
    return _NOT_XML.sub("", text).replace("]]>", "]]]]><![CDATA[>")


def _text(text: str) -> str:
    return escape(_NOT_XML.sub("", text))
