"""Alembic environment: runs migrations on the connection the app hands over, or on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import comments.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from comments.db import create_db_engine
    from comments.settings import Settings

    url = config.get_main_option("sqlalchemy.url")
    settings = Settings(database_url=url) if url else Settings()
    engine = create_db_engine(settings)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
