"""The benchmark: the service as users run it, the framework's ceiling and Isso, under the same wrk load.

    make bench                                   # or: .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --size 10000,1000000 --targets comments   # growth
    COMMENTS_BENCH_POSTGRES_URL=postgresql+psycopg://USER@HOST/DATABASE make bench

For each target it starts a server with 2 workers on a fresh, seeded database (`comments serve
--workers 2` on SQLite, then on PostgreSQL when COMMENTS_BENCH_POSTGRES_URL is set; the bare
Starlette app of bench/ceiling.py under the same uvicorn options; Isso 0.14 under gunicorn when
`make bench-peers` installed it), drives three kinds of load with wrk and bench/wrk.lua (thread
reads across 200 pages, the same reads revalidated with If-None-Match, new comments) and prints
the median of 3 runs of 15 s as a table, the targets of issue 7 met or missed, and JSON (also
written to bench/results/). wrk runs on the same cores as the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import load  # noqa: E402
import peers  # noqa: E402
import probes  # noqa: E402
import profiles  # noqa: E402
import report  # noqa: E402
from load import ClientSettings, Figure  # noqa: E402
from servers import BenchError, Server, cpu_seconds, free_port, http_get, rss_mb  # noqa: E402

TARGETS = ("comments", "ceiling", "isso")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10000",
                        help="comments in the database, or several comma-separated for the growth test "
                             "(default 10000; the read set and the long thread are always there)")
    parser.add_argument("--pages", type=int, default=200, help="pages of 30 comments that the load reads (default 200)")
    parser.add_argument("--big-thread", type=int, default=2000, help="comments in the long thread (default 2000)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run (default 15)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: comments, ceiling, isso")
    parser.add_argument("--scenarios", default=",".join(load.SCENARIOS), help="comma-separated: read, revalidate, post")
    parser.add_argument("--soak", type=int, default=200_000, metavar="REQUESTS",
                        help="after the scenarios of the first comments server, this many more requests (reads, "
                             "revalidations, posts), sampling worker memory after each round (default 200000; 0: off)")
    parser.add_argument("--port", type=int, default=0, help="port for the servers, one at a time (default: a free one)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also sample a worker of the service with py-spy (where its CPU goes) in one extra "
                             "run per scenario, and print the summaries")
    parser.add_argument("--profile-wall", action="store_true",
                        help="with --profile: sample every busy thread, not only the one holding the GIL")
    parser.add_argument("--json", type=Path, metavar="FILE", help="where to write the JSON (default bench/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (databases, logs)")
    return parser


class Bench:
    """One benchmark run: the working directory, the client settings, and the results so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client = ClientSettings(threads=args.threads, connections=args.connections, duration=args.duration,
                                     runs=args.runs, warmup=args.warmup)
        self.scenarios = [s for s in args.scenarios.split(",") if s]
        unknown = set(self.scenarios) - set(load.SCENARIOS)
        if unknown:
            raise BenchError(f"unknown scenario {sorted(unknown)[0]!r}: use read, revalidate, post")
        self.workdir = Path(tempfile.mkdtemp(prefix="comments-bench-"))
        self.results: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.document: Path | None = None
        self.seed = 0
        self.soaked = False
        import seed as seeding

        self.bodies = [b.text for b in seeding.post_pool(1000)]
        self.pages = [seeding.page_key(i) for i in range(args.pages)]

    def port(self) -> int:
        return self.args.port or free_port()

    # ---- driving one server -------------------------------------------------------------

    def drive(self, server: Server, api: str, scenarios: list[str], result: dict[str, Any],
              profile_name: str | None = None, soak: int = 0) -> dict[str, Figure]:
        """Every scenario against a running server, memory sampled between them; then, with soak,
        that many more requests in rounds of reads, revalidations and posts."""
        reads, posts = (load.isso_paths if api == "isso" else load.comments_paths)(self.pages)
        etags = []
        if "revalidate" in scenarios or soak:
            for path in reads:
                status, headers, _ = http_get(server.url + path)
                etag = {k.lower(): v for k, v in headers.items()}.get("etag")
                if status != 200 or not etag:
                    raise BenchError(f"{server.name}: {path} answered {status} without an ETag")
                etags.append(etag)
        data = load.write_data(self.workdir / f"{server.name}.lua", api, self.pages, reads, etags or reads, posts,
                               self.bodies)
        figures: dict[str, Figure] = {}
        every: list[load.Run] = []
        memory = [self._memory(server, 0, "started")]
        for scenario in scenarios:
            runs = []
            if self.client.warmup > 0:
                every.append(self._wrk(server, scenario, data, self.client.warmup))
            for _ in range(self.client.runs):
                runs.append(self._wrk(server, scenario, data, self.client.duration))
            every += runs
            figures[scenario] = load.median(runs)
            print(report.progress_line(server.name, scenario, figures[scenario]), flush=True)
            if profile_name and self.args.profile:
                profiled = self._profiled(server, scenario, data, profile_name, result)
                every += [profiled] if profiled else []
            memory.append(self._memory(server, sum(r.requests for r in every), f"after {scenario}"))
        mix = [("read", 10.0), ("revalidate", 5.0), ("post", 3.0)]
        before = sum(r.requests for r in every)
        if soak:
            memory.append(self._memory(server, before, "soak"))
        while soak and sum(r.requests for r in every) - before < soak:
            for scenario, seconds in mix:
                every.append(self._wrk(server, scenario, data, seconds))
            served = sum(r.requests for r in every)
            memory.append(self._memory(server, served, "soak"))
            print(f"  {server.name:28} soak        {served:,} requests, worker memory "
                  f"{', '.join(f'{mb:.0f}' for mb in memory[-1]['worker_rss_mb'].values())} MB", flush=True)
        result["acknowledged_posts"] = sum(n for r in every for status, n in r.statuses.items()
                                           if status in ("201", "202"))
        result["scenarios"] = {s: f.to_json() for s, f in figures.items()}
        result["memory"] = memory
        return figures

    def _wrk(self, server: Server, scenario: str, data: Path, seconds: float) -> load.Run:
        self.seed += 1
        if server.process is None or server.process.poll() is not None:
            raise BenchError(f"{server.name} stopped during the run; the end of its log:\n" + server.log_tail())
        workers = server.workers()
        before = cpu_seconds(workers)
        run = load.run_wrk(server.url, scenario, data, self.seed, seconds, self.client)
        if run.requests:
            run = replace(run, server_cpu_us=(cpu_seconds(workers) - before) * 1e6 / run.requests)
        # A server slower than the load (Isso) still has queued connections when wrk stops: the
        # next run starts only when one more request has been answered behind them.
        http_get(server.url + server.ready_path, timeout=120)
        return run

    def _profiled(self, server: Server, scenario: str, data: Path, name: str,
                  result: dict[str, Any]) -> load.Run | None:
        workers = server.workers()
        if profiles.py_spy() is None or not workers:
            note = "profile: py-spy is not installed (pip install py-spy)"
            self.skipped += [] if note in self.skipped else [note]
            return None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"{name}-{scenario}.txt"
        spy = profiles.record(workers[0], self.client.duration, out, gil=not self.args.profile_wall)
        run = self._wrk(server, scenario, data, self.client.duration)
        if spy is not None:
            spy.wait(timeout=self.client.duration + 30)
        if out.exists():
            result.setdefault("profiles", {})[scenario] = str(out)
        return run

    @staticmethod
    def _memory(server: Server, served: int, when: str) -> dict[str, Any]:
        sizes = {str(pid): rss_mb(pid) for pid in server.workers()}
        return {"when": when, "requests": served,
                "worker_rss_mb": {pid: round(mb, 1) for pid, mb in sizes.items() if mb is not None}}

    # ---- the three targets --------------------------------------------------------------

    def comments(self, backend: str, size: int) -> None:
        from comments import crypto
        from comments import db as dbmod
        from comments.settings import Settings

        import seed as seeding

        url, cleanup = self._database(backend, size)
        try:
            key = crypto.new_key()
            if self.args.keep:  # to look into the kept database afterwards
                (self.workdir / f"comments-{backend}-{size}.email-key").write_text(key + "\n")
            settings = Settings(database_url=url, email_key=key, trusted_proxies="127.0.0.1", _env_file=None)
            print(f"comments/{backend}: seeding {size:,} comments ...", flush=True)
            dbmod.upgrade(settings)
            database = dbmod.Database(settings)
            try:
                seeded = seeding.seed(database, size, pages=self.args.pages, big_thread=self.args.big_thread)
            finally:
                database.dispose()
            result: dict[str, Any] = {"target": "comments", "backend": backend, "size": seeded.comments,
                                      "seed_seconds": round(seeded.seconds, 1)}
            env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
            env.update(COMMENTS_DATABASE_URL=url, COMMENTS_EMAIL_KEY=key, COMMENTS_TRUSTED_PROXIES="127.0.0.1")
            port = self.port()
            server = Server(f"comments-{backend}-{size}", [probes.comments_command(), "serve", "--host", "127.0.0.1",
                            "--port", str(port), "--workers", "2"], port, env, self.workdir)
            try:
                server.start()
                self._keep_document(server)
                result["big_thread"] = {"comments": self.args.big_thread, **probes.big_thread(server, seeded.big_page)}
                soak = self.args.soak if not self.soaked else 0
                self.soaked = True
                self.drive(server, "comments", self.scenarios, result, f"comments-{backend}", soak)
            finally:
                server.stop()
            if result["acknowledged_posts"]:
                result["durability"] = probes.durability(settings, seeded.comments, result["acknowledged_posts"])
            self.results.append(result)
        finally:
            cleanup()

    def _keep_document(self, server: Server) -> None:
        """A real 30-comment thread as the ceiling's fixed document."""
        if self.document is not None:
            return
        status, _, body = http_get(server.url + load.comments_paths(self.pages[:1])[0][0])
        if status == 200:
            self.document = self.workdir / "thread.json"
            self.document.write_bytes(body)

    def _database(self, backend: str, size: int) -> tuple[str, Any]:
        if backend == "sqlite":
            path = self.workdir / f"comments-{size}.db"
            return f"sqlite:///{path}", lambda: None
        return probes.postgres_schema(os.environ[probes.POSTGRES_ENV], f"bench_{os.getpid()}_{size}")

    def ceiling(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
        if self.document is not None:
            env["BENCH_CEILING_DOCUMENT"] = str(self.document)
        port = self.port()
        server = Server("ceiling", [sys.executable, "-m", "uvicorn", "ceiling:create_app", "--factory",
                                    "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
                                    "--workers", "2", "--no-access-log", "--no-server-header",
                                    "--timeout-keep-alive", "5"], port, env, self.workdir)
        result: dict[str, Any] = {"target": "ceiling", "backend": "-", "size": 0,
                                  "document_bytes": self.document.stat().st_size if self.document else None}
        try:
            server.start()
            self.drive(server, "comments", self.scenarios, result)
        finally:
            server.stop()
        self.results.append(result)

    def isso(self, size: int) -> None:
        missing = peers.isso_installed()
        if missing:
            self.skipped.append(missing)
            print(f"isso: skipped: {missing}; measuring the rest", flush=True)
            return
        scenarios = [s for s in self.scenarios if s != "revalidate"]
        if "revalidate" in self.scenarios:
            self.skipped.append("isso: revalidation not measured: Isso sends no ETag with a thread")
        workdir = self.workdir / "isso"
        workdir.mkdir(exist_ok=True)
        port = self.port()
        print(f"isso: seeding {size:,} comments ...", flush=True)
        server = peers.prepare_isso(workdir, port, size, self.args.pages, self.args.big_thread)
        result: dict[str, Any] = {"target": "isso", "backend": "sqlite", "size": size}
        try:
            server.start()
            self.drive(server, "isso", scenarios, result)
        finally:
            server.stop()
        self.results.append(result)

    def besides(self, name: str, measure: Any) -> list[str]:
        """Measure a target after the main ones; if it fails, say so and keep the rest (returns the failure)."""
        try:
            measure()
        except BenchError as exc:
            note = f"{name} not measured: {exc}"
            print(f"bench: {note}", file=sys.stderr, flush=True)
            self.skipped.append(note.splitlines()[0])
            return [note]
        return []

    def close(self) -> None:
        if self.args.keep:
            print(f"kept the working directory {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in args.size.split(",") if s.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        print("bench: --size takes whole numbers, comma-separated (10000 or 10000,1000000)", file=sys.stderr)
        return 2
    targets = [t for t in args.targets.split(",") if t]
    if set(targets) - set(TARGETS):
        print(f"bench: --targets takes {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    bench = None
    try:
        info = probes.machine()
        print(report.header(info, args), flush=True)
        bench = Bench(args)
        if "comments" in targets:
            for size in sizes:
                bench.comments("sqlite", size)
        if "ceiling" in targets:
            bench.ceiling()
        failed = []
        if "isso" in targets:
            failed += bench.besides("isso", lambda: bench.isso(sizes[0]))
        if "comments" in targets and os.environ.get(probes.POSTGRES_ENV):
            for size in sizes:
                failed += bench.besides("PostgreSQL", lambda: bench.comments("postgresql", size))
        elif "comments" in targets:
            bench.skipped.append(f"PostgreSQL not measured: set {probes.POSTGRES_ENV} to measure it")
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        summary = {"when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": info,
                   "client": asdict(bench.client), "note": report.SHARED_CORES, "results": bench.results,
                   "skipped": bench.skipped}
        summary["targets"] = report.targets(bench.results)
        print(report.table(bench.results, summary["targets"], bench.skipped))
        if args.profile:
            for item in bench.results:
                for path in item.get("profiles", {}).values():
                    print(profiles.summarise(Path(path), 20))
        out = args.json or HERE / "results" / f"bench-{summary['when'].replace(':', '')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
        print(f"\nJSON (also in {out}):")
        print(json.dumps({k: v for k, v in summary.items() if k != "results"} |
                         {"results": [report.compact(r) for r in bench.results]}))
        return 1 if failed else 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.close()


if __name__ == "__main__":
    raise SystemExit(main())
