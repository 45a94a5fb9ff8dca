"""Shared fixtures: a fresh database per test on SQLite, and again on PostgreSQL when
COMMENTS_TEST_DATABASE_URL is set; the real app in-process through httpx."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from comments import db as dbmod
from comments import store
from comments.app import create_app
from comments.settings import Settings

PG_URL = os.environ.get("COMMENTS_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
READER_IP = "198.51.100.7"


TEST_EMAIL_KEY = "gdPRtSxAFXD4rlNcW3lo4PYdq7u2qOVTnl8KDoGRq40"


def base_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": url, "_env_file": None, "email_key": TEST_EMAIL_KEY}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    dbmod.upgrade(base_settings(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str | None]:
    """A schema of our own in the test database, migrated once; dropped at the end."""
    if not PG_URL:
        yield None
        return
    schema = f"cmt_test_{os.getpid()}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    dbmod.upgrade(base_settings(rendered))
    try:
        yield rendered
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
                 pg_schema_url: str | None) -> str:
    """A fresh, migrated, empty database for one test."""
    if request.param == "sqlite":
        path = tmp_path / "comments.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    assert pg_schema_url is not None
    engine = sa.create_engine(pg_schema_url)
    tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()
    return pg_schema_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrisation) to change settings."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return base_settings(database_url, **settings_overrides)


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    application = create_app(settings)
    yield application
    application.state.service.db.dispose()


@pytest.fixture
def service(app: Any) -> Any:
    return app.state.service


class Clients:
    """httpx clients on the in-process app, each from its own reader address."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._counter = itertools.count(10)
        self._open: list[httpx.AsyncClient] = []

    def client(self, ip: str | None = None) -> httpx.AsyncClient:
        if ip is None:
            n = next(self._counter)
            ip = f"192.0.2.{n % 250 + 1}" if n < 250 else f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self._open.append(client)
        return client

    async def close(self) -> None:
        for client in self._open:
            await client.aclose()


@pytest.fixture
async def clients(app: Any) -> AsyncIterator[Clients]:
    pool = Clients(app)
    yield pool
    await pool.close()


@pytest.fixture
async def client(clients: Clients) -> httpx.AsyncClient:
    """One reader's client (a fixed address)."""
    return clients.client(READER_IP)


@pytest.fixture
def token(service: Any) -> str:
    return store.create_token(service.db, "moderator", store.utcnow())


@pytest.fixture
async def mod(clients: Clients, token: str) -> httpx.AsyncClient:
    """A moderator's client: every request carries the bearer token."""
    client = clients.client("192.0.2.250")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


_emails = itertools.count(1)


def comment(**fields: Any) -> dict[str, Any]:
    """A valid comment's fields; override any."""
    n = next(_emails)
    data = {"page": "/p/1", "body": f"A thoughtful comment number {n}.", "author": "Ann",
            "email": f"reader{n}@example.org"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


async def post(clients: Clients, **fields: Any) -> httpx.Response:
    """Post a comment from a fresh reader address (so the flood and rate limits stay out of the way)."""
    return await clients.client().post("/api/comments", json=comment(**fields))


async def approve(mod: httpx.AsyncClient, comment_id: int) -> None:
    response = await mod.patch(f"/api/admin/comments/{comment_id}", json={"status": "approved"})
    assert response.status_code == 200, response.text


def table_rows(url: str, names: set[str] | None = None, excluded: frozenset[str] = frozenset()
               ) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the models (or of those named, or all but the excluded), each
    table's rows ordered by primary key."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                str(table.name): [dict(row._mapping) for row in conn.execute(
                    sa.select(table).order_by(*table.primary_key.columns))]
                for table in SQLModel.metadata.sorted_tables
                if (table.name in names if names is not None else table.name not in excluded)
            }
    finally:
        engine.dispose()


@contextmanager
def command_line_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, email_key: str | None = TEST_EMAIL_KEY
) -> Iterator[None]:
    """The environment of an in-process `comments` command: only our COMMENTS_* variables (the
    database and, unless None, the tests' email key), no .env file in reach, and the root logger
    put back afterwards (the CLI configures logging onto the captured stderr)."""
    for name in [n for n in os.environ if n.startswith("COMMENTS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COMMENTS_DATABASE_URL", database_url)
    if email_key is not None:
        monkeypatch.setenv("COMMENTS_EMAIL_KEY", email_key)
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
