"""The real service with two worker processes: concurrent posts all land exactly once, bulk
moderation under load answers no 5xx, and the server leaves no process behind."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from chaos_support import Server, group_members, postgres_schema
from conftest import TEST_EMAIL_KEY

from comments.crypto import Keyring, parse_keys

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("COMMENTS_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
THREADS = 16
TOTAL = 400
PAGES = [f"/w/{n}" for n in range(8)]


@pytest.fixture(params=BACKENDS)
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL the server owns: a SQLite file, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    assert PG_URL is not None
    with postgres_schema(PG_URL, f"cmt_workers_{os.getpid()}") as url:
        yield url


@pytest.fixture
def server(server_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
    env.update({
        "COMMENTS_DATABASE_URL": server_url,
        "COMMENTS_TRUSTED_PROXIES": "127.0.0.1",
        "COMMENTS_EMAIL_KEY": TEST_EMAIL_KEY,
        "COMMENTS_IP_RETENTION_DAYS": "1",  # keep full addresses, so each reader's can be checked
        "COMMENTS_RATE_LIMIT": "1000/minute",
    })
    running = Server(env, tmp_path / "cwd", workers=2)
    try:
        running.start(ready_within=30)
    except RuntimeError as exc:
        running.stop()
        pytest.fail(str(exc))
    process = running.process
    assert process is not None
    try:
        yield running
    finally:
        clean = running.stop()
    assert clean, f"the server needed SIGKILL:\n{running.log_tail()}"
    assert process.returncode in (0, -signal.SIGTERM), running.log_tail()
    assert not group_members(process.pid), "a server process outlived SIGTERM"


def address(n: int) -> str:
    """A distinct client address for each n (below 62,500)."""
    return f"10.0.{n // 250}.{n % 250 + 1}"


def comment(n: int) -> dict[str, str]:
    return {"page": PAGES[n % len(PAGES)], "author": f"Reader {n}", "email": f"reader{n}@load.example",
            "body": f"Comment number {n} of the load test. " + "Lorem ipsum dolor sit amet. " * (n % 7)}


class Failures:
    """Every unwanted answer, from any thread."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._lock = threading.Lock()

    def add(self, what: str) -> None:
        with self._lock:
            self.items.append(what)

    def check(self, label: str, response: httpx.Response, expected: set[int]) -> None:
        if response.status_code not in expected or "database is locked" in response.text:
            self.add(f"{label}: {response.status_code} {response.text[:200]}")


def post_range(base: str, numbers: range, failures: Failures) -> list[int]:
    ids = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in numbers:
            response = client.post("/api/comments", json=comment(n),
                                   headers={"X-Forwarded-For": address(n)})
            failures.check(f"POST #{n}", response, {202})
            if response.status_code == 202:
                ids.append(response.json()["id"])
    return ids


def admin_list(client: httpx.Client, status: str) -> tuple[list[dict[str, object]], dict[str, int]]:
    items: list[dict[str, object]] = []
    cursor = None
    counts: dict[str, int] = {}
    while True:
        params = {"status": status, "limit": "200", **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/admin/comments", params=params)
        assert response.status_code == 200, response.text
        data = response.json()
        items.extend(data["items"])
        counts = data["counts"]
        cursor = data["next"]
        if not cursor:
            return items, counts


def test_two_workers_under_concurrent_load(server: Server, server_url: str) -> None:
    failures = Failures()
    per_thread = TOTAL // THREADS
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(post_range, server.base, range(t * per_thread, (t + 1) * per_thread), failures)
                   for t in range(THREADS)]
        ids = [i for future in futures for i in future.result()]
    assert failures.items == []
    assert len(ids) == TOTAL
    assert len(set(ids)) == TOTAL

    token = server.token("load-test")
    with httpx.Client(base_url=server.base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as mod:
        items, counts = admin_list(mod, "pending")
        assert counts["pending"] == TOTAL
        assert len(items) == TOTAL
        assert sorted(int(str(item["id"])) for item in items) == sorted(ids)
        expected = {f"reader{n}@load.example": comment(n) for n in range(TOTAL)}
        for item in items:
            sent = expected.pop(str(item["email"]))
            assert item["author"] == sent["author"]
            assert item["page"] == sent["page"]
            assert item["ip"] == address(int(str(sent["author"]).split()[-1]))
        assert expected == {}

        # the bodies as stored, straight from the database
        engine = sa.create_engine(server_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT email, body FROM comment")).all()
        finally:
            engine.dispose()
        ring = Keyring(tuple(parse_keys(TEST_EMAIL_KEY, "test key")))
        rows = [(ring.decrypt(email), body) for email, body in rows]
        assert sorted(rows) == sorted((f"reader{n}@load.example", comment(n)["body"].strip())
                                      for n in range(TOTAL))

        # bulk approval while other readers post and read
        stop_load = threading.Event()
        extra: list[int] = []
        numbers = itertools.count(TOTAL)  # next() on a count is atomic under the GIL

        def background() -> None:
            with httpx.Client(base_url=server.base, timeout=30) as client:
                while not stop_load.is_set():
                    n = next(numbers)
                    extra.extend(post_range(server.base, range(n, n + 1), failures))
                    for page in PAGES[:3]:
                        failures.check(f"GET thread {page}", client.get("/api/comments",
                                       params={"page": page, "limit": "200"}), {200})
                    failures.check("GET counts", client.get("/api/counts", params=[("page", p) for p in PAGES]),
                                   {200})

        def approve(batch: list[int]) -> None:
            with httpx.Client(base_url=server.base, timeout=30, headers=mod.headers) as client:
                response = client.post("/api/admin/comments/bulk", json={"ids": batch, "status": "approved"})
                failures.check("bulk", response, {200})
                if response.status_code == 200:
                    body = response.json()
                    if sorted(body["updated"]) != sorted(batch) or body["missing"]:
                        failures.add(f"bulk answered {body}")

        loaders = [threading.Thread(target=background) for _ in range(2)]
        for loader in loaders:
            loader.start()
        try:
            batches = [sorted(ids)[i:i + 50] for i in range(0, TOTAL, 50)]
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(approve, batches))
            time.sleep(0.3)
        finally:
            stop_load.set()
            for loader in loaders:
                loader.join(timeout=30)
        assert failures.items == []
        assert extra, "the background load did not post"

        approved, counts = admin_list(mod, "approved")
        assert sorted(int(str(item["id"])) for item in approved) == sorted(ids)
        assert counts["pending"] == len(extra)
        total = 0
        for page in PAGES:
            response = mod.get("/api/comments", params={"page": page, "limit": "200"})
            assert response.status_code == 200
            total += response.json()["total"]
        assert total == TOTAL

    log = server.log_text()
    for bad in ("Traceback", "internal error", "database unavailable", "database is locked"):
        assert bad not in log, log[-3000:]
