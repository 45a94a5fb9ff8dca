"""The database module on SQLite: how a writer waits for the write lock, and when it gives up."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import base_settings

from comments import db as dbmod


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dbmod.Database]:
    settings = base_settings(f"sqlite:///{tmp_path / 'lock.db'}", db_timeout_seconds=1.0)
    dbmod.upgrade(settings)
    database = dbmod.Database(settings)
    yield database
    database.dispose()


def hold_write_lock(path: Path, release: threading.Event) -> threading.Thread:
    """Another connection takes SQLite's write lock and keeps it until `release` is set."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            release.wait(60)
            other.execute("COMMIT")
        finally:
            other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    return thread


def busy_timeout(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def test_a_writer_waits_for_the_lock_and_keeps_its_busy_timeout(database: dbmod.Database, tmp_path: Path) -> None:
    release = threading.Event()
    holder = hold_write_lock(tmp_path / "lock.db", release)
    threading.Timer(0.3, release.set).start()  # while the write below waits for the lock
    try:
        with database.write() as conn:  # waits until the other connection commits
            conn.exec_driver_sql("INSERT INTO secret (name, value, created_at) VALUES ('lock-test', 'x', '2026-01-01 00:00:00')")
            assert busy_timeout(conn) == 1000  # the configured wait, for every other statement
    finally:
        holder.join()
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT value FROM secret WHERE name = 'lock-test'").scalar_one() == "x"


def test_a_writer_gives_up_after_the_timeout_with_sqlites_error(database: dbmod.Database, tmp_path: Path) -> None:
    release = threading.Event()
    holder = hold_write_lock(tmp_path / "lock.db", release)  # held until the write below has given up
    try:
        began = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="database is locked"), database.write() as conn:
            conn.exec_driver_sql("INSERT INTO secret (name, value, created_at) VALUES ('never', 'x', '2026-01-01 00:00:00')")
        assert time.monotonic() - began >= 1.0  # it waited out its timeout (1 s) before giving up
    finally:
        release.set()
        holder.join()
    with database.write() as conn:  # the connection is usable, with its wait as configured
        assert busy_timeout(conn) == 1000
        assert conn.exec_driver_sql("SELECT count(*) FROM secret WHERE name = 'never'").scalar_one() == 0


def test_threads_of_one_process_take_turns_to_write(
    database: dbmod.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While one thread writes, another of the same process waits for its turn asleep: it never
    # asks SQLite for the lock again and again (each retry draws its pause from random.uniform).
    retries: list[float] = []

    class Counting:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            retries.append(low)
            return low

    monkeypatch.setattr(dbmod, "random", Counting)
    first_in = threading.Event()
    order: list[str] = []

    def first() -> None:
        with database.write() as conn:
            first_in.set()
            time.sleep(0.3)
            conn.exec_driver_sql("INSERT INTO secret (name, value, created_at) VALUES ('first', 'x', '2026-01-01 00:00:00')")
            order.append("first")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(5)
    with database.write() as conn:
        order.append("second")
        conn.exec_driver_sql("INSERT INTO secret (name, value, created_at) VALUES ('second', 'x', '2026-01-01 00:00:00')")
    thread.join()
    assert order == ["first", "second"]
    assert retries == []


def test_a_thread_that_gets_no_turn_gives_up_after_the_timeout(database: dbmod.Database) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.write():
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    try:
        began = time.monotonic()
        with pytest.raises(sa.exc.TimeoutError, match="no turn to write"), database.write():
            pass  # pragma: no cover - never reached
        assert time.monotonic() - began >= 1.0  # the configured timeout (1 s); a 503 for a request
    finally:
        release.set()
        thread.join()
    with database.write() as conn:  # the turn came back: the next write goes through
        conn.exec_driver_sql("SELECT 1")
