"""The database: engine with SQLite pragmas, units of work, and migrations through alembic's API."""

from __future__ import annotations

import logging
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
            hide_parameters=True,
        )
        _sqlite_setup(engine, settings.sqlite_synchronous)
        return engine
    # Options given in the URL (say, a search_path) are kept; a statement timeout is added.
    options = " ".join(filter(None, [url.query.get("options", ""), f"-c statement_timeout={int(timeout * 1000)}"]))
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


def _sqlite_setup(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock at BEGIN, so two workers never deadlock upgrading
        # a read lock ("database is locked"); they wait in the busy handler instead.
        if conn.get_execution_options().get("immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


class Database:
    """The engine and the two kinds of unit of work: read and write."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = self.engine.execution_options(immediate=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a transaction that only reads."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a transaction that commits at the end, or rolls back on error."""
        with self._writer.begin() as conn:
            yield conn

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
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        if own:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
