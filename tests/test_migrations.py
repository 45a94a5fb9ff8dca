"""Migrations: the migrated schema matches the models, upgrade is idempotent, and the wheel
carries its own migrations (no source checkout needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import comments.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from comments import db as dbmod
from comments.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"comment", "page", "moderation_rules", "moderator_token", "moderation_action", "rate_event",
          "secret"}


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]


def schema_diff(engine: sa.Engine) -> list[object]:
    """What alembic's autogenerate would write to bring the database to SQLModel.metadata."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "target_metadata": SQLModel.metadata,
                "render_as_batch": conn.dialect.name == "sqlite",
                "compare_type": True,
            },
        )
        return list(compare_metadata(context, SQLModel.metadata))


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = dbmod.create_db_engine(settings_for(database_url))
    try:
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_current_revision_is_head(database_url: str) -> None:
    settings = settings_for(database_url)
    engine = dbmod.create_db_engine(settings)
    try:
        current = dbmod.current_revision(engine)
    finally:
        engine.dispose()
    head = dbmod.head_revision(settings)
    assert head is not None
    assert current == head


def test_models_differ_from_an_empty_database(tmp_path: Path) -> None:
    """The comparison is not vacuous: an unmigrated database differs from the models."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        diff = schema_diff(engine)
    finally:
        engine.dispose()
    added = {op[1].name for op in diff if isinstance(op, tuple) and op[0] == "add_table"}
    assert TABLES <= added


def test_upgrade_on_an_empty_sqlite_file_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    settings = settings_for(f"sqlite:///{path}")
    dbmod.upgrade(settings)
    dbmod.upgrade(settings)  # a second run is a no-op, not an error
    engine = dbmod.create_db_engine(settings)
    try:
        names = set(sa.inspect(engine).get_table_names())
        assert TABLES | {"alembic_version"} <= names
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        assert versions == [dbmod.head_revision(settings)]
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_wheel_carries_its_migrations(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("comments-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "comments/_alembic/env.py" in names
        assert "comments/_alembic/versions/0001_initial_schema.py" in names
        unpacked = tmp_path / "site"
        archive.extractall(unpacked)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = tmp_path / "x.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
    env.update({"PYTHONPATH": str(unpacked), "COMMENTS_DATABASE_URL": f"sqlite:///{database}",
                "PYTHONNOUSERSITE": "1"})
    script = (
        "import sys, comments, comments.db; "
        "print('FILE=' + comments.__file__); "
        "print('MIGRATIONS=' + str(comments.db.migrations_dir())); "
        "from comments.cli import main; sys.exit(main(['db', 'upgrade']))"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    assert Path(lines["FILE"]).resolve().is_relative_to(unpacked.resolve()), run.stdout
    assert Path(lines["MIGRATIONS"]).resolve() == (unpacked / "comments" / "_alembic").resolve()
    assert not (elsewhere / "alembic").exists()

    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        assert TABLES | {"alembic_version"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
