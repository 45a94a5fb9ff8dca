"""The benchmark (bench/) starts, parses and fails clearly; its seeding writes rows the service reads.

CI does not run the benchmark itself: these tests check its parts quickly, and one `slow` test
runs it end to end for a second per figure on a tiny database.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from comments import store
from comments.db import Database
from conftest import base_settings

BENCH = Path(__file__).resolve().parent.parent / "bench"
RUN = [sys.executable, str(BENCH / "run.py")]
MODULES = ("bodies", "ceiling", "load", "peers", "probes", "profiles", "report", "seed", "servers")
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.fixture
def bench() -> Iterator[dict[str, ModuleType]]:
    """The benchmark's modules, imported as run.py imports them, and forgotten afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        yield {name: importlib.import_module(name) for name in MODULES}
    finally:
        sys.path.remove(str(BENCH))
        for name in MODULES:
            sys.modules.pop(name, None)


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=BENCH.parent)


def test_run_starts_and_explains_its_options() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--size", "--targets", "--duration", "--runs", "--profile", "--soak"):
        assert option in done.stdout


def test_a_bad_option_value_is_one_line_not_a_traceback() -> None:
    done = _run("--size", "lots")
    assert done.returncode == 2
    assert "--size takes whole numbers" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_wrk_is_said_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing to run there, wrk included
    done = _run("--duration", "1", env=env)
    assert done.returncode == 2
    assert "wrk is not installed" in done.stderr and "make bench" in done.stderr
    assert "Traceback" not in done.stderr


@needs_wrk
def test_a_taken_port_is_said_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("--targets", "ceiling", "--port", str(port), "--duration", "1", "--runs", "1",
                    "--warmup", "0", "--soak", "0")
    assert done.returncode == 2
    assert f"port {port} is taken" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_does_not_start_is_said_clearly(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    servers = bench["servers"]
    server = servers.Server("broken", [sys.executable, "-c", "import sys; print('no luck'); sys.exit(3)"],
                            servers.free_port(), dict(os.environ), tmp_path)
    with pytest.raises(servers.BenchError, match=r"broken did not start \(it exited with code 3\)(?s:.*)no luck"):
        server.start(timeout=30)


def test_bodies_are_realistic_and_reproducible(bench: dict[str, ModuleType]) -> None:
    import random

    bodies = bench["bodies"]
    made = [bodies.make_body(random.Random(n)) for n in range(400)]
    assert made[5] == bodies.make_body(random.Random(5))
    assert all(100 <= len(b.text) <= 1500 for b in made)
    marked = sum(b.marked_up for b in made) / len(made)
    assert 0.15 < marked < 0.5
    assert any("https://" in b.text for b in made) and any("<em>" in b.text or "<q>" in b.text for b in made)


def test_seeded_rows_read_like_the_stores_own(bench: dict[str, ModuleType], database_url: str) -> None:
    settings = base_settings(database_url)
    database = Database(settings)
    try:
        seeded = bench["seed"].seed(database, 200, pages=3, big_thread=20)
        assert seeded.comments == 200 and len(seeded.pages) == 3
        thread = store.read_thread(database, seeded.pages[0], 50, None)
        assert thread.total == 30 and thread.version == 1
        flat = [c for top in thread.comments for c in _walk(top)]
        assert len(flat) == 30 and any(c["parent"] for c in flat)
        assert all(c["body_html"].startswith("<p>") for c in flat)
        full = store.get_full(database, flat[0]["id"])
        assert full is not None and full["email"].endswith("@mail.example")  # decrypts with the keyring
        assert store.counts(database, [seeded.big_page]) == {seeded.big_page: 20}
        # the sequences moved past the explicit ids: a new comment gets a fresh one
        new = store.NewComment(
            data=store_comment_in(seeded.pages[1]), body_html="<p>Hi</p>", policy_version=1, links=0,
            ip="198.18.0.1", user_agent=None, now=store.utcnow(),
        )
        from comments.security import Keys

        created = store.create_comment(database, Keys(b"k" * 32), new)
        assert created["id"] > 200
    finally:
        database.dispose()


def store_comment_in(page: str) -> Any:
    from comments.models import CommentIn

    return CommentIn(page=page, body="Hi there, a new one.", author="Ann", email="ann@mail.example")


def _walk(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield item
    for reply in item["replies"]:
        yield from _walk(reply)


async def test_the_ceiling_answers_reads_revalidations_and_posts(bench: dict[str, ModuleType]) -> None:
    app = bench["ceiling"].create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as client:
        first = await client.get("/api/comments", params={"page": "/a/"})
        assert first.status_code == 200 and first.json()["total"] == 30
        again = await client.get("/api/comments", params={"page": "/b/"},
                                 headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        posted = await client.post("/api/comments", json={"page": "/a/", "body": "Hello", "author": "A",
                                                          "email": "a@mail.example"})
        assert posted.status_code == 202 and posted.json()["author"] == "A"


def test_lua_strings_survive_any_text(bench: dict[str, ModuleType]) -> None:
    load = bench["load"]
    assert load.lua_string('a "q" \\ é\n1') == '"a \\"q\\" \\\\ \\195\\169\\0101"'
    assert load.json_inner('Zoë said "hi"\n') == 'Zo\\u00eb said \\"hi\\"\\n'


def test_profile_summary_reads_py_spy_raw_output(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "Runner.run (asyncio/runners.py:118);thread (comments/public.py:90) 30\n"
        "Runner.run (asyncio/runners.py:118);thread (comments/public.py:90);"
        "Connection.execute (sqlalchemy/engine/base.py:1400) 70\n"
        "Thread._bootstrap (threading.py:1002);Queue.get (queue.py:171);Condition.wait (threading.py:320) 500\n"
    )
    text = bench["profiles"].summarise(raw)
    assert "100 samples of busy threads" in text  # the idle thread is left out
    assert "70.0 %  SQLAlchemy" in text
    assert "100.0 %  thread (comments/public.py)" in text


def test_the_table_and_targets_judge_results(bench: dict[str, ModuleType]) -> None:
    report = bench["report"]

    def fig(rps: float, p99: float = 5.0, statuses: dict[str, int] | None = None) -> dict[str, Any]:
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": p99, "server_cpu_us": 100, "statuses": statuses or {"200": 9}}

    memory = [{"when": "started", "requests": 0, "worker_rss_mb": {"1": 90.0}},
              {"when": "after read", "requests": 100_000, "worker_rss_mb": {"1": 110.0}},
              {"when": "soak", "requests": 120_000, "worker_rss_mb": {"1": 111.0}},
              {"when": "soak", "requests": 320_000, "worker_rss_mb": {"1": 112.0}}]
    results = [
        {"target": "comments", "backend": "sqlite", "size": 10_000, "memory": memory,
         "scenarios": {"read": fig(700, p99=30.0), "revalidate": fig(900, statuses={"304": 9}), "post": fig(300)},
         "big_thread": {"comments": 2000, "bytes": 1, "cold_ms_median": 20.0, "cold_ms_max": 40.0,
                        "warm_ms_median": 1.0},
         "durability": {"acknowledged": 5, "stored": 6, "ok": True, "commit": "SQLite synchronous=FULL"}},
        {"target": "ceiling", "backend": "-", "size": 0,
         "scenarios": {"read": fig(1000), "revalidate": fig(1000), "post": fig(1000)}},
        {"target": "isso", "backend": "sqlite", "size": 10_000, "scenarios": {"read": fig(10), "post": fig(20)}},
    ]
    goals = {g["name"].rsplit(" (", 1)[0]: g for g in report.targets(results)}
    assert goals["thread read vs ceiling"]["met"] and goals["thread read vs ceiling"]["value"] == "70 %"
    assert not goals["thread read p99 at 64 connections"]["met"]
    assert goals["revalidation (304) vs ceiling"]["met"] and goals["revalidation answered 304"]["met"]
    assert goals["comment accepted vs ceiling"]["met"] and goals["comment accepted vs Isso"]["met"]
    assert goals["thread read vs Isso"]["met"] and goals["2,000-comment thread, first page, uncached"]["met"]
    assert goals["worker memory over 320,000 requests"]["met"]
    assert goals["worker memory flat over the soak's last 200,000 requests"]["met"]
    table = report.table(results, report.targets(results), ["isso: revalidation not measured"])
    assert "70 %" in table and "70.0" in table and "[MISS] thread read p99" in table


@needs_wrk
def test_the_load_script_runs_under_wrk_and_reports(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    load = bench["load"]
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append(f"{self.command} {self.path} {self.headers.get('x-forwarded-for')} {body[:60]!r}")
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:  # noqa: N802
            self._answer(304 if self.headers.get("if-none-match") else 200)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(202)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pages = ["/a/", "/b/"]
        reads, posts = load.comments_paths(pages)
        data = load.write_data(tmp_path / "data.lua", "comments", pages, reads, ['"e1"', '"e2"'], posts,
                               ['Plain text, "quoted" and caf\\u00e9.'])
        client = load.ClientSettings(threads=1, connections=2, duration=1, runs=1, warmup=0)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for mode, status in (("read", "200"), ("revalidate", "304"), ("post", "202")):
            run = load.run_wrk(url, mode, data, 1, 1, client)
            assert run.requests > 0 and set(run.statuses) == {status}, (mode, run)
    finally:
        server.shutdown()
        server.server_close()
    posted = [line for line in seen if line.startswith("POST")]
    assert posted and all(" 198.1" in line and '"page": "/' in line for line in posted)


@pytest.mark.slow
@needs_wrk
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _run("--targets", "comments,ceiling", "--size", "200", "--pages", "3", "--big-thread", "20",
                "--duration", "1", "--runs", "1", "--warmup", "0", "--soak", "0", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "targets (issue 7):" in done.stdout and "ceiling (bare Starlette)" in done.stdout
    import json

    summary = json.loads(out.read_text())
    ours = summary["results"][0]
    assert ours["target"] == "comments" and set(ours["scenarios"]) == {"read", "revalidate", "post"}
    assert ours["scenarios"]["revalidate"]["statuses"].keys() == {"304"}
    assert ours["durability"]["ok"]
