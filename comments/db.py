"""The database: engine with SQLite pragmas, units of work, and migrations through alembic's API."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .crypto import Keyring, KeyProblem, KeySource
from .settings import Settings

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The alembic folder: inside the installed package, or at the top of a source checkout."""
    packaged = Path(__file__).parent / "_alembic"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "alembic"


def create_db_engine(settings: Settings) -> Engine:
    """An engine for the configured URL; SQLite gets WAL, foreign keys and a busy timeout."""
    url = sa.engine.make_url(settings.database_url)
    timeout = settings.db_timeout_seconds
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url,
            connect_args={"timeout": timeout, "check_same_thread": False},
            pool_timeout=timeout,  # waiting for a free connection counts against the same limit
            hide_parameters=True,
        )
        _sqlite_setup(engine, settings.sqlite_synchronous, timeout)
        return engine
    # Options given in the URL (say, a search_path) are kept; a statement timeout is added.
    given = url.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given  # the option given more than once
    options = " ".join(filter(None, [given, f"-c statement_timeout={int(timeout * 1000)}"]))
    url = url.difference_update_query(["options"])
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=8,
        pool_timeout=timeout,
        hide_parameters=True,
        connect_args={
            "connect_timeout": max(1, int(timeout)),
            "options": options,
        },
    )


def _sqlite_setup(engine: Engine, synchronous: str, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # Deleted and overwritten content is zeroed, not left in free pages of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock at BEGIN, so two workers never deadlock upgrading
        # a read lock ("database is locked"); they wait for it instead.
        wait = conn.get_execution_options().get("immediate")
        if wait:
            _begin_immediate(conn, wait if isinstance(wait, float) else timeout, timeout)
        else:
            conn.exec_driver_sql("BEGIN")


#: How long a writer waits between two tries for SQLite's write lock (at random in this range).
WRITE_LOCK_RETRY_SECONDS = (0.0005, 0.002)
#: The last try for the write lock goes through SQLite's busy handler with this wait.
_LAST_TRY_SECONDS = 0.05


def _begin_immediate(conn: Connection, timeout: float, configured: float) -> None:
    """BEGIN IMMEDIATE, waiting at most `timeout` seconds for the write lock; the connection's
    busy timeout is the `configured` one again afterwards.

    SQLite's own busy handler sleeps longer and longer between tries, up to 100 ms: under steady
    contention (several workers, all writing) a writer that has waited a while keeps losing the
    lock to newcomers, which try at once, and now and then one waits out the whole timeout. Here
    every waiter tries again within a couple of milliseconds, so the lock goes round about evenly;
    the last try goes through SQLite's handler, whose error is the usual one."""
    raw = conn.connection.dbapi_connection
    assert raw is not None, "a connection checked out of the pool"
    waiting = f"PRAGMA busy_timeout = {int(configured * 1000)}"
    deadline = time.monotonic() + timeout
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            time.sleep(random.uniform(*WRITE_LOCK_RETRY_SECONDS))
        raw.execute(f"PRAGMA busy_timeout = {int(_LAST_TRY_SECONDS * 1000)}")
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the last try: SQLite's error, as SQLAlchemy wraps it
    finally:
        raw.execute(waiting)


def key_source(settings: Settings, create: bool = False) -> KeySource:
    """Where the email keys come from; with create, a missing key file is made (mode 0600)."""
    source = KeySource(settings.email_key, settings.key_file)
    if create and not source.exists():
        source.create_file()
    return source


def verify_keys(settings: Settings, engine: Engine, thorough: bool = True) -> KeySource:
    """The email keys, checked against the database: a clear KeyProblem if addresses are
    encrypted and the key is missing or wrong; a new key file if nothing is encrypted yet.
    Thorough (at start, before any worker): one address under each key in use, a scan of the
    table, since a rotation may have stopped half-way. Otherwise (each worker's first use, with
    requests waiting): the oldest and newest address, by primary key."""
    source = KeySource(settings.email_key, settings.key_file)
    samples: list[str] = []
    if sa.inspect(engine).has_table("comment"):
        with engine.connect() as conn:
            if thorough:
                samples = list(conn.execute(sa.text(
                    "SELECT MIN(email) FROM comment WHERE email LIKE 'e1.%' GROUP BY substr(email, 1, 13)"
                )).scalars())
            else:
                for order in ("ASC", "DESC"):
                    value = conn.execute(sa.text(
                        f"SELECT email FROM comment WHERE email LIKE 'e1.%' ORDER BY id {order} LIMIT 1")).scalar()
                    if value:
                        samples.append(value)
    if samples and not source.exists():
        raise KeyProblem(
            "this database holds encrypted email addresses but no key was found: set COMMENTS_EMAIL_KEY, "
            f"or restore the key file {source.path} (or point COMMENTS_EMAIL_KEY_FILE at it)"
        )
    if not source.exists():
        source.create_file()
        log.info("made a new email key file (back it up apart from the database)")
    ring = source.ring()
    for value in samples:
        try:
            ring.decrypt(value)
        except KeyProblem:
            raise KeyProblem(
                f"{source.where} does not hold the key that encrypted this database's email addresses "
                "(restore the right key; nothing was changed)"
            ) from None
    return source


class Database:
    """The engine, the email keys, and the two kinds of unit of work: read and write."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = self.engine.execution_options(immediate=True)
        # SQLite: the threads of this process take turns before asking for the file's write lock.
        self._write_turn = threading.Lock() if self.is_sqlite else None
        self._keys: KeySource | None = None
        self._keys_lock = threading.Lock()

    def keyring(self) -> Keyring:
        """The email keyring, checked against the database on first use (once, whatever the
        number of threads asking at that moment)."""
        if self._keys is None:
            with self._keys_lock:
                if self._keys is None:
                    self._keys = verify_keys(self.settings, self.engine, thorough=False)
        return self._keys.ring()

    def refresh_keyring(self) -> Keyring:
        self.keyring()
        assert self._keys is not None
        return self._keys.refresh()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a transaction that only reads."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a transaction that commits at the end, or rolls back on error.

        On SQLite the threads of one process first take turns (a lock of this object), so that
        only one of them at a time asks for the file's write lock: the others sleep rather than
        all trying again and again, which cost more CPU than the writes themselves under load.
        The whole wait, for the turn and then for the file, is bounded by the database timeout."""
        turn = self._write_turn
        if turn is None:
            with self._writer.begin() as conn:
                yield conn
            return
        timeout = self.settings.db_timeout_seconds
        deadline = time.monotonic() + timeout
        if not turn.acquire(timeout=timeout):
            raise PoolTimeout(f"no turn to write in {timeout:g} s: the other threads' writes took that long")
        try:
            with self._writer.connect() as conn:
                conn.execution_options(immediate=max(deadline - time.monotonic(), _LAST_TRY_SECONDS))
                with conn.begin():
                    yield conn
        finally:
            turn.release()

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(settings: Settings) -> Config:
    """An alembic Config pointing at our migrations and the configured database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, engine: Engine | None = None) -> None:
    """Bring the schema up to the newest migration."""
    config = alembic_config(settings)
    own = engine is None
    engine = engine or create_db_engine(settings)
    try:
        config.attributes["keyring"] = verify_keys(settings, engine).ring()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        if config.attributes.get("plaintext_removed") and engine.dialect.name == "sqlite":
            # Rewrite the file so no page, free or in the WAL, still holds a plain address.
            raw = engine.raw_connection()
            try:
                raw.execute("VACUUM")
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
    finally:
        if own:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
