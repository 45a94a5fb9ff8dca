"""When the database does not answer (stopped, dropped, frozen, locked, read-only, full, or every
connection busy) each request gets a quick 503 `unavailable` with Retry-After, never a 500 or a hang;
afterwards the service recovers by itself and has lost nothing it acknowledged."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from chaos_support import (
    Outcome, PrivatePostgres, Server, address, bad_log_lines, payload, private_postgres, server_env,
    statuses,
)
from conftest import Clients, post

DB_TIMEOUT = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"db_timeout_seconds": DB_TIMEOUT, "rate_limit": "1000/minute"}


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response.headers["retry-after"]) > 0


async def timed(call: Any) -> tuple[httpx.Response, float]:
    begin = time.monotonic()
    response = await call
    return response, time.monotonic() - begin


# ---- in-process: every connection busy, SQLite locked or read-only ----------------------


async def test_no_free_connection_is_a_quick_503(clients: Clients, client: httpx.AsyncClient, service: Any) -> None:
    assert (await post(clients)).status_code == 202
    pool = service.db.engine.pool
    held = [service.db.engine.raw_connection() for _ in range(pool.size() + pool._max_overflow)]
    try:
        for call in (lambda: client.get("/api/comments", params={"page": "/p/1"}),
                     lambda: post(clients), lambda: client.get("/healthz")):
            response, seconds = await timed(call())
            assert_unavailable(response)
            assert seconds < DB_TIMEOUT * 2 + 1
    finally:
        for conn in held:
            conn.close()
    assert (await post(clients)).status_code == 202


async def test_an_answer_that_hangs_is_a_503_at_the_deadline(client: httpx.AsyncClient, service: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The database accepts the query and never answers (a frozen host): twice the database
    timeout plus a second, then 503; the service answers others meanwhile."""
    from comments import store

    assert (await client.get("/api/counts", params={"page": "/p/1"})).status_code == 200
    real = store.counts

    def hang(*args: Any) -> Any:
        time.sleep(DB_TIMEOUT * 2 + 1.8)
        return real(*args)

    monkeypatch.setattr(store, "counts", hang)
    response, seconds = await timed(client.get("/api/counts", params={"page": "/p/1"}))
    assert_unavailable(response)
    assert DB_TIMEOUT * 2 + 1 - 0.2 <= seconds < DB_TIMEOUT * 2 + 1.8, seconds
    assert (await client.get("/healthz")).status_code == 200
    await asyncio.sleep(1.2)  # the late call ends in its thread before this test's event loop does


def sqlite_path(database_url: str) -> Path:
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        pytest.skip("a SQLite file")
    return Path(url.database)


@pytest.mark.parametrize("lock", ["writer", "exclusive"])
async def test_a_locked_sqlite_file_is_a_quick_503(clients: Clients, client: httpx.AsyncClient, service: Any,
                                                   database_url: str, lock: str) -> None:
    path = sqlite_path(database_url)
    assert (await post(clients)).status_code == 202
    other = sqlite3.connect(path, isolation_level=None)
    try:
        if lock == "exclusive":  # another program holds the file: not even readers get in
            service.db.engine.dispose()
            other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE page SET closed = closed")
        for _ in range(2):
            response, seconds = await timed(post(clients))
            assert_unavailable(response)
            assert seconds < DB_TIMEOUT * 2 + 1
        response = await client.get("/api/comments", params={"page": "/p/1"})
        if lock == "exclusive":
            assert_unavailable(response)
        else:
            assert response.status_code == 200  # WAL: readers never wait for the writer
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await post(clients)).status_code == 202


@pytest.fixture
def read_only() -> Iterator[Any]:
    """A function that makes files read-only even for root (chattr +i), undone afterwards."""
    changed: list[Path] = []

    def make(*paths: Path) -> None:
        for path in paths:
            if os.geteuid() == 0:
                if shutil.which("chattr") is None:
                    pytest.skip("running as root without chattr: cannot make a file read-only")
                done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
                if done.returncode != 0:
                    pytest.skip(f"chattr +i does not work here: {done.stderr.decode().strip()}")
            else:
                path.chmod(0o444)
            changed.append(path)

    yield make
    for path in changed:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o644)


async def test_a_read_only_sqlite_file_is_a_clean_503(clients: Clients, client: httpx.AsyncClient, service: Any,
                                                      database_url: str, read_only: Any) -> None:
    path = sqlite_path(database_url)
    assert (await post(clients)).status_code == 202
    service.db.engine.dispose()  # the file turns read-only under a running service: new connections
    read_only(path)
    for _ in range(2):
        response, seconds = await timed(post(clients))
        assert_unavailable(response)
        assert seconds < DB_TIMEOUT * 2 + 1
    reading = await client.get("/api/comments", params={"page": "/p/1"})
    assert reading.status_code in (200, 503), reading.text


# ---- real servers ----------------------------------------------------------------------


def expected_answer(outcome: Outcome) -> bool:
    """A success, a 404 for a comment still pending, or a clean 503."""
    if outcome.status in (200, 201, 202, 404):
        return True
    return outcome.status == 503 and outcome.code == "unavailable" and bool(outcome.retry_after)


@pytest.mark.slow
def test_a_full_disk_gives_clean_503s_and_the_service_recovers(tmp_path: Path) -> None:
    """The disk fills up under the running service (RLIMIT_FSIZE on its processes: writes past
    the current end of any file fail), then space comes back."""
    if not hasattr(__import__("resource"), "prlimit"):
        pytest.skip("needs prlimit (Linux)")
    import resource

    env = server_env(f"sqlite:///{tmp_path / 'full.db'}", db_timeout_seconds="2")
    outcomes: list[Outcome] = []
    with Server(env, tmp_path / "srv", workers=2) as server, httpx.Client(base_url=server.base, timeout=30) as http:
        server.start()

        def post(n: int) -> Outcome:
            begin = time.monotonic()
            response = http.post("/api/comments", json=payload("full", n), headers={"X-Forwarded-For": address(n)})
            data = response.json()
            outcome = Outcome("post", begin, time.monotonic(), response.status_code,
                              data.get("error", {}).get("code"), response.headers.get("retry-after"), n=n,
                              comment_id=data.get("id"), text=response.text[:200])
            outcomes.append(outcome)
            return outcome

        for n in range(20):
            assert post(n).status == 202
        limits = {pid: resource.prlimit(pid, resource.RLIMIT_FSIZE) for pid in server.pids()}
        try:
            for pid in limits:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (4096, limits[pid][1]))
            full = [post(n) for n in range(20, 80)]
            health = http.get("/healthz")
            reading = http.get("/api/comments", params={"page": "/chaos/full/1"})
        finally:
            for pid, limit in limits.items():
                resource.prlimit(pid, resource.RLIMIT_FSIZE, limit)
        after = [post(n) for n in range(80, 100)]
        log = server.log_text()
    print("disk full:", dict(statuses(full)), "healthz", health.status_code, "thread", reading.status_code)
    assert all(expected_answer(o) for o in outcomes), [o for o in outcomes if not expected_answer(o)][:3]
    assert statuses(full)["503"] > 0, statuses(full)
    assert health.status_code in (200, 503) and reading.status_code in (200, 503)
    assert all(o.status == 202 for o in after), statuses(after)
    assert bad_log_lines(log) == [], log[-3000:]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    try:
        with private_postgres() as server:
            yield server
    except LookupError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_postgresql_stopped_mid_load(postgres: PrivatePostgres, tmp_path: Path) -> None:
    """Connections dropped mid-transaction, then the server stopped for 5 s and started again."""
    from chaos_support import outage_run

    report = outage_run(postgres, tmp_path, down_seconds=5, db_timeout=2, before=3, after=6)
    print(report.summary())
    assert report.dropped_backends > 0
    unexpected = [o for o in report.outcomes if not expected_answer(o)]
    assert unexpected == [], unexpected[:5]
    during = report.during()
    assert len(during) > 50 and statuses(during) == {"503": len(during)}
    assert any(o.kind == "healthz" for o in during)
    slowest = max(o.end - o.start for o in report.outcomes)
    assert slowest < 2 * 2 + 1, slowest
    recovered = report.recovered_after()
    assert recovered is not None and recovered < 5, recovered
    settled = [o for o in report.outcomes if o.start > report.started + 3]
    assert settled and statuses(settled)["503"] == 0, statuses(settled)
    assert report.ledger.problems == []
    assert report.ledger.acknowledged > 100
    assert report.bad_log == [], report.bad_log[:5]


def freeze(pid_file: Path, sig: signal.Signals) -> None:
    """SIGSTOP or SIGCONT to the postmaster and all its children."""
    postmaster = int(pid_file.read_text().split()[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    for pid in [postmaster, *map(int, children)]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_a_frozen_postgresql_is_a_503_within_the_timeout(postgres: PrivatePostgres, tmp_path: Path) -> None:
    """The server accepts connections but never answers (a hung host): no request waits past
    the timeout, and everything works again once it thaws."""
    env = server_env(postgres.url, db_timeout_seconds="1")
    with Server(env, tmp_path, workers=1) as server, httpx.Client(base_url=server.base, timeout=30) as http:
        server.start()
        for n in range(10):
            assert http.post("/api/comments", json=payload("frozen", n),
                             headers={"X-Forwarded-For": address(n)}).status_code == 202
        assert http.get("/healthz").status_code == 200
        freeze(postgres.data / "postmaster.pid", signal.SIGSTOP)
        answers = []
        try:
            for path in ["/healthz", "/api/comments?page=/chaos/frozen/1"]:
                begin = time.monotonic()
                response = http.get(path)
                answers.append((path, response.status_code, time.monotonic() - begin))
                assert_unavailable(response)
            begin = time.monotonic()
            response = http.post("/api/comments", json=payload("frozen", 99), headers={"X-Forwarded-For": address(99)})
            answers.append(("POST", response.status_code, time.monotonic() - begin))
            assert_unavailable(response)
        finally:
            freeze(postgres.data / "postmaster.pid", signal.SIGCONT)
        assert max(seconds for _, _, seconds in answers) < 1 * 3 + 1.5, answers
        deadline = time.monotonic() + 10
        while http.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 10 s"
            time.sleep(0.2)
        assert http.post("/api/comments", json=payload("frozen", 100),
                         headers={"X-Forwarded-For": address(100)}).status_code == 202
        assert bad_log_lines(server.log_text()) == []
