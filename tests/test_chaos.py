"""Staying power, short form (the long one: python bench/chaos.py --minutes N): the whole server is
SIGKILLed at random moments under full load and every acknowledged comment is still there, once and
whole; four workers writing to one SQLite file never see "database is locked" or a 5xx."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_support import contention_run, crash_run, postgres_schema

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("COMMENTS_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database the server owns: a SQLite file, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chaos.db'}"
        return
    assert PG_URL is not None
    with postgres_schema(PG_URL, f"cmt_chaos_{os.getpid()}") as url:
        yield url


def test_sigkill_under_load_loses_nothing_acknowledged(server_database: str, tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    report = crash_run(server_database, tmp_path / "run", seconds=20, min_crashes=6, seed=seed)
    print(f"seed {seed}: {report.summary()}")
    assert report.crashes >= 5
    assert report.ledger.acknowledged > 200, report.summary()
    assert report.ledger.problems == [], f"seed {seed}: {report.ledger.problems}"
    assert set(report.answers) <= {"201", "202", "ConnectError", "RemoteProtocolError", "ReadError",
                                   "WriteError"}, report.answers
    if server_database.startswith("sqlite"):
        assert report.integrity == "ok"
        assert report.fk_violations == 0
    assert report.bad_log == [], report.bad_log[:5]


def test_four_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    report = contention_run(f"sqlite:///{tmp_path / 'busy.db'}", tmp_path / "run", seconds=25, workers=4)
    print(report.summary())
    allowed = {"post": {"201", "202"}, "one": {"200", "404"}}  # a comment still pending is 404 to the public
    for kind, answers in report.by_kind.items():
        assert set(answers) <= allowed.get(kind, {"200"}), (kind, answers)
    assert report.locked_answers == 0
    assert report.ledger.acknowledged > 100, report.summary()
    assert report.ledger.problems == []
    assert report.bulk_updated > 0
    assert report.integrity == "ok"
    assert report.bad_log == [], report.bad_log[:5]
