"""Isso's SQLite database, opened read-only, read as a stream of ImportedComment records."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .checks import Checker
from .records import ImportFormatError, Item, Options, Problem, Status
from .values import canonical_id

WHAT = "an Isso database"
#: Isso's comment modes: 1 public, 2 waiting in moderation, 4 deleted (its text emptied
#: when it had replies; a deleted comment without replies is removed from the table).
MODES: dict[int, Status] = {1: "approved", 2: "pending", 4: "trash"}
_NEEDED = {
    "threads": {"id", "uri"},
    "comments": {"tid", "id", "parent", "created", "mode", "remote_addr", "text", "author", "email", "website"},
}
# Reading a foreign file: this is the one place outside store/ with SQL, and it only reads.
_ROWS = (
    "SELECT c.id, c.parent, c.created, c.mode, c.remote_addr, c.text, c.author, c.email, c.website,"
    " t.uri FROM comments AS c LEFT JOIN threads AS t ON t.id = c.tid ORDER BY c.id"
)


def parse(path: str | os.PathLike[str], options: Options | None = None) -> Iterator[Item]:
    """Every comment of an Isso database in id order, checked; a row's position is its ordinal."""
    options = options or Options()
    checker = Checker("isso", options)
    connection = _open(Path(path))
    try:
        checker.source = _check_schema(connection)
        try:
            rows = connection.execute(_ROWS)
            for row, values in enumerate(rows, start=1):
                yield from _comment(checker, row, values)
        except sqlite3.Error as exc:
            raise ImportFormatError(None, f"the Isso database cannot be read: {exc}") from None
    finally:
        connection.close()


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ImportFormatError(None, "cannot read the file: no such file")
    try:
        # mode=ro: never written, never created; the database may belong to a running Isso.
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportFormatError(None, f"cannot open the file: {exc}") from None
    connection.text_factory = bytes  # decoded per field, so that bad UTF-8 fails one row only
    return connection


def _check_schema(connection: sqlite3.Connection) -> str:
    """The installation's session key (its identity), once the tables are known to be Isso's."""
    try:
        tables = {_text(name) for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, needed in _NEEDED.items():
            if table not in tables:
                raise ImportFormatError(None, f"this is not {WHAT}: it has no {table} table")
            columns = {_text(info[1]) for info in connection.execute(f"PRAGMA table_info({table})")}
            missing = needed - columns
            if missing:
                raise ImportFormatError(
                    None, f"this is not {WHAT}: its {table} table has no {', '.join(sorted(missing))}")
        if "preferences" in tables:
            found = connection.execute("SELECT value FROM preferences WHERE key = 'session-key'").fetchone()
            if found is not None:
                return _text(found[0])
    except sqlite3.DatabaseError as exc:
        raise ImportFormatError(None, f"this is not {WHAT}: not an SQLite database ({exc})") from None
    return ""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _comment(checker: Checker, row: int, values: tuple[object, ...]) -> Iterator[Item]:
    raw_id, raw_parent, created, mode, address, *texts = values
    origin_id = canonical_id(str(raw_id)) if raw_id is not None else None
    problem = checker.admit(origin_id, row)
    if problem is not None:
        yield problem
        return
    assert origin_id is not None
    try:
        text, author, email, website, uri, address_text = (_text(v) for v in (*texts, address))
    except UnicodeDecodeError:
        yield Problem(row, "text that is not valid UTF-8", origin_id=origin_id)
        return
    notes = []
    status = MODES.get(mode) if isinstance(mode, int) else None
    if status is None:
        status = "pending"
        notes.append(Problem(row, f"unknown Isso mode {mode!r}: imported as pending", origin_id=origin_id,
                             kind="warning"))
    elif mode == 4 and not text.strip():
        yield Problem(row, "deleted in Isso, no text", origin_id=origin_id, kind="skipped")
        return
    if values[-1] is None:
        yield Problem(row, "its thread is missing from the threads table", origin_id=origin_id)
        return
    try:
        created_at = timestamp_date(_text(created) if isinstance(created, bytes) else created)
    except ValueError as exc:
        yield Problem(row, str(exc), origin_id=origin_id)
        return
    parent = canonical_id(str(raw_parent)) if raw_parent is not None else None
    yield from checker.finish(
        origin_id=origin_id, position=row, page=uri, parent=parent, status=status,
        created_at=created_at, author=author, email=email, url=website, ip=address_text,
        user_agent="", body=text, body_format="markdown", notes=notes,
    )


def timestamp_date(value: object) -> datetime | None:
    """A UNIX timestamp (Isso writes time.time() floats) as naive UTC; None when missing."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"unreadable timestamp {str(value)[:40]!r}") from None
