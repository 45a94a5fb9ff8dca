"""Measurements and facts beside the load: the machine, the long thread's first page, durability; and the databases."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import load
from servers import BenchError, Server, http_get

POSTGRES_ENV = "COMMENTS_BENCH_POSTGRES_URL"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    wrk = subprocess.run([load.wrk_path(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "cores": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "uvicorn": version("uvicorn"), "starlette": version("starlette"), "sqlalchemy": version("sqlalchemy"),
        "wrk": " ".join(wrk.split()[:2]), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def comments_command() -> str:
    beside = Path(sys.executable).parent / "comments"
    found = str(beside) if beside.exists() else shutil.which("comments")
    if not found:
        raise BenchError("the `comments` command is not installed: run `make install` first")
    return found


def postgres_schema(url: str, schema: str) -> tuple[str, Any]:
    """A fresh schema of our own in the given database, and a function that drops it."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    try:
        parsed = sa.engine.make_url(url)
        admin = sa.create_engine(parsed, connect_args={"connect_timeout": 5})
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except (SQLAlchemyError, ValueError) as exc:
        shown = url if "parsed" not in locals() else parsed.render_as_string(hide_password=True)
        raise BenchError(f"PostgreSQL at {shown} ({POSTGRES_ENV}) cannot be used: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    with_schema = parsed.update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

    return with_schema.render_as_string(hide_password=False), drop


def big_thread(server: Server, page: str, samples: int = 30) -> dict[str, Any]:
    """The first page (50 top-level comments with their replies) of the long thread, one
    request at a time: cold (each request a different `limit`, so no worker has it cached) and warm."""
    def timed(path: str) -> tuple[float, int]:
        began = time.perf_counter()
        status, _, body = http_get(server.url + path)
        if status != 200:
            raise BenchError(f"{server.name}: the long thread answered {status}")
        return (time.perf_counter() - began) * 1000, len(body)

    base = f"/api/comments?page={quote(page, safe='')}"
    cold = sorted(timed(f"{base}&limit={50 + i}")[0] for i in range(samples))
    size = timed(base)[1]
    warm = sorted(timed(base)[0] for _ in range(samples))
    return {"bytes": size, "cold_ms_median": round(cold[len(cold) // 2], 2), "cold_ms_max": round(cold[-1], 2),
            "warm_ms_median": round(warm[len(warm) // 2], 2)}


def durability(settings: Any, seeded: int, acknowledged: int) -> dict[str, Any]:
    """Every comment acknowledged (201/202) in any run is in the database once the server has
    stopped (rows may exceed answers by the requests in flight when wrk stopped)."""
    import sqlalchemy as sa

    from comments.db import Database
    from comments.store.common import comment_t

    database = Database(settings)
    try:
        with database.read() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(comment_t)).scalar_one() - seeded
            if database.is_sqlite:
                mode = f"SQLite synchronous={settings.sqlite_synchronous}"
            else:
                mode = f"PostgreSQL synchronous_commit={conn.exec_driver_sql('SHOW synchronous_commit').scalar()}"
    finally:
        database.dispose()
    return {"acknowledged": acknowledged, "stored": stored, "ok": stored >= acknowledged, "commit": mode}
