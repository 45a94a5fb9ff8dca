"""Real servers under stress for the staying-power tests and bench/chaos.py: processes, load, checks."""

from __future__ import annotations

import base64
import glob
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from comments import db as dbmod
from comments import store
from comments.settings import Settings

COMMAND = Path(sys.executable).parent / "comments"
STATUSES = ("pending", "approved", "spam", "trash")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.split("/")[2]))
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Server:
    """`comments serve` in a process group of its own; kill() is SIGKILL to every process of it."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int = 2, port: int | None = None) -> None:
        self.env = env
        self.workdir = workdir
        self.workers = workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, ready_within: float = 60) -> float:
        """Start and wait until /healthz answers 200; returns the seconds that took."""
        begin = time.monotonic()
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [str(COMMAND), "serve", "--workers", str(self.workers), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=self.env, cwd=self.workdir, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - begin
            except httpx.TransportError:
                pass
            if time.monotonic() - begin > ready_within:
                raise RuntimeError(f"/healthz did not answer within {ready_within} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        return group_members(self.process.pid) if self.process else []

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once, as a power cut would."""
        if self.process is None:
            return
        kill_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_group_gone(self.process.pid, 10)
        self.process = None

    def stop(self, timeout: float = 15) -> bool:
        """SIGTERM, then SIGKILL if it lingers; True when SIGTERM was enough."""
        if self.process is None:
            return True
        pgid = self.process.pid
        kill_group(pgid, signal.SIGTERM)
        clean = True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            clean = False
        if not wait_group_gone(pgid, timeout if clean else 0.5):
            clean = False
            kill_group(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
            wait_group_gone(pgid, 10)
        self.process = None
        return clean

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def token(self, name: str = "chaos") -> str:
        result = subprocess.run([str(COMMAND), "token", "create", f"{name}-{time.time_ns()}"], env=self.env,
                                cwd=self.workdir, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment for a server: ours without COMMENTS_*, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
    env.update({"COMMENTS_DATABASE_URL": database_url, "COMMENTS_TRUSTED_PROXIES": "127.0.0.1",
                "COMMENTS_RATE_LIMIT": "100000/minute", "COMMENTS_LOG_LEVEL": "WARNING"})
    if "email_key" in Settings.model_fields:  # the same key for the server and for our checks
        env["COMMENTS_EMAIL_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    env.update({"COMMENTS_" + k.upper(): v for k, v in settings.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings the server sees with this environment (for reading its database afterwards)."""
    values: dict[str, Any] = {k.removeprefix("COMMENTS_").lower(): v for k, v in env.items()
                              if k.startswith("COMMENTS_")}
    return Settings(_env_file=None, **values)


# ---- load -----------------------------------------------------------------------------


def address(n: int) -> str:
    """A distinct client address for each n (below 16 million), sent as X-Forwarded-For."""
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def payload(run: str, n: int) -> dict[str, str]:
    """Comment number n of a run: every field says which one it is, the body runs to a few KiB."""
    filler = "Grüße aus Köln, 東京, ✓ — line {i} of the padding.\n"
    return {
        "page": f"/chaos/{run}/{n % 13}",
        "author": f"Reader {n}",
        "email": f"reader{n}@{run}.example",
        "url": f"https://reader{n}.example/",
        "body": f"[{run}:{n}] A comment that must survive whole.\n\n"
                + "".join(filler.format(i=i) for i in range(n % 40)) + f"End of {n}.",
    }


@dataclass
class Outcome:
    """One request as the client saw it."""

    kind: str
    start: float
    end: float
    status: int | None = None
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None
    n: int | None = None
    comment_id: int | None = None
    text: str = ""


def _outcome(kind: str, start: float, response: httpx.Response | None, error: Exception | None,
             n: int | None = None) -> Outcome:
    result = Outcome(kind, start, time.monotonic(), n=n)
    if response is None:
        result.error = type(error).__name__
        return result
    result.status = response.status_code
    result.retry_after = response.headers.get("retry-after")
    result.text = response.text[:300]
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            result.code = data["error"].get("code")
        elif isinstance(data, dict) and response.status_code in (201, 202):
            result.comment_id = data.get("id")
    return result


class Load:
    """Threads that post numbered comments (never retried) and read, as fast as the server answers."""

    def __init__(self, base: str, run: str, posters: int = 8, readers: int = 0, timeout: float = 30,
                 extra: list[Callable[[Load, httpx.Client], None]] | None = None) -> None:
        self.base = base
        self.run = run
        self.posters = posters
        self.readers = readers
        self.timeout = timeout
        self.extra = extra or []
        self.outcomes: list[Outcome] = []
        self._numbers = iter(range(10**7))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def call(self, client: httpx.Client, kind: str, method: str, url: str, n: int | None = None,
             **kwargs: Any) -> Outcome:
        start = time.monotonic()
        response = error = None
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            error = exc
        outcome = _outcome(kind, start, response, error, n)
        self.record(outcome)
        if error is not None:
            time.sleep(0.1)  # the server is down: do not spin
        return outcome

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=httpx.Timeout(self.timeout, connect=5))

    def _post_loop(self) -> None:
        with self._client() as client:
            while not self._stop.is_set():
                with self._lock:
                    n = next(self._numbers)
                self.call(client, "post", "POST", "/api/comments", n, json=payload(self.run, n),
                          headers={"X-Forwarded-For": address(n)})

    def _read_loop(self) -> None:
        rng = random.Random()
        with self._client() as client:
            while not self._stop.is_set():
                page = f"/chaos/{self.run}/{rng.randrange(13)}"
                self.call(client, "thread", "GET", "/api/comments", params={"page": page, "limit": "20"})
                self.call(client, "counts", "GET", "/api/counts", params=[("page", page), ("page", "/none")])
                for done in self.acknowledged_sample(rng):
                    self.call(client, "one", "GET", f"/api/comments/{done}")

    def _extra_loop(self, work: Callable[[Load, httpx.Client], None]) -> None:
        with self._client() as client:
            while not self._stop.is_set():
                work(self, client)

    def acknowledged_sample(self, rng: random.Random, k: int = 2) -> list[int]:
        with self._lock:
            recent = [o.comment_id for o in self.outcomes[-200:] if o.comment_id]
        return rng.sample(recent, min(k, len(recent)))

    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        targets: list[Callable[[], None]] = [self._post_loop] * self.posters + [self._read_loop] * self.readers
        targets += [lambda w=w: self._extra_loop(w) for w in self.extra]  # type: ignore[misc]
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 10)

    def acknowledged(self) -> dict[int, int]:
        """Comment number -> id, for every post answered 201 or 202."""
        return {o.n: o.comment_id for o in self.outcomes
                if o.kind == "post" and o.status in (201, 202) and o.n is not None and o.comment_id}

    def attempted(self) -> set[int]:
        return {o.n for o in self.outcomes if o.kind == "post" and o.n is not None}


# ---- what the database holds ------------------------------------------------------------


def stored_comments(settings: Settings) -> list[dict[str, Any]]:
    """Every comment, in every status, as the store gives moderators their full view."""
    database = dbmod.Database(settings)
    rows: list[dict[str, Any]] = []
    try:
        for status in STATUSES:
            after = None
            while True:
                listing = store.list_comments(database, status, None, None, 200, after)
                rows.extend(listing.items)
                if listing.next_key is None:
                    break
                after = listing.next_key
    finally:
        database.dispose()
    return rows


def sqlite_checks(path: Path) -> tuple[str, int]:
    """(PRAGMA integrity_check, number of foreign-key violations) of a SQLite file."""
    conn = sqlite3.connect(path)
    try:
        integrity = ";".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        violations = len(conn.execute("PRAGMA foreign_key_check").fetchall())
    finally:
        conn.close()
    return integrity, violations


@dataclass
class Ledger:
    """Acknowledged comments checked against the database: lost, doubled or mangled ones."""

    acknowledged: int = 0
    attempted: int = 0
    stored: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    wrong_id: list[int] = field(default_factory=list)
    mangled: list[int] = field(default_factory=list)
    strangers: list[int] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        for name in ("lost", "duplicated", "wrong_id", "mangled", "strangers"):
            items = getattr(self, name)
            if items:
                found.append(f"{len(items)} {name}: {items[:10]}")
        return found


def check_ledger(run: str, acknowledged: dict[int, int], attempted: set[int],
                 rows: list[dict[str, Any]]) -> Ledger:
    ledger = Ledger(acknowledged=len(acknowledged), attempted=len(attempted))
    prefix = f"[{run}:"
    mine = [r for r in rows if str(r.get("body", "")).startswith(prefix)]
    ledger.stored = len(mine)
    by_n: dict[int, list[dict[str, Any]]] = {}
    for row in mine:
        n = int(str(row["body"])[len(prefix):].split("]", 1)[0])
        by_n.setdefault(n, []).append(row)
    for n, found in by_n.items():
        if n not in attempted:
            ledger.strangers.append(n)
            continue
        if len(found) > 1:
            ledger.duplicated.append(n)
        sent = payload(run, n)
        for row in found:
            if any(row.get(k) != v for k, v in sent.items()) or not row.get("body_html"):
                ledger.mangled.append(n)
    for n, comment_id in acknowledged.items():
        found = by_n.get(n, [])
        if not found:
            ledger.lost.append(n)
        elif found[0]["id"] != comment_id:
            ledger.wrong_id.append(n)
    return ledger


def statuses(outcomes: list[Outcome]) -> Counter[str]:
    """How many answers of each status (transport errors by name)."""
    return Counter(str(o.status) if o.status is not None else o.error or "?" for o in outcomes)


def bad_log_lines(text: str) -> list[str]:
    """Log lines that must not appear; a traceback is reported with its last line (the error)."""
    words = ("Traceback", "internal error", "database is locked")
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if any(w in line for w in words):
            tail = next((later for later in lines[i + 1:] if later and not later.startswith(" ")), "")
            found.append(f"{line} ... {tail}" if "Traceback" in line else line)
    return found


# ---- PostgreSQL servers of our own ---------------------------------------------------------


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, which a test may stop and start at will."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="comments-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              check=True)

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200 -c shared_buffers=16MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "postgres.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def cleanup(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        except (subprocess.SubprocessError, OSError):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ValueError, ProcessLookupError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bin()
    if bindir is None:
        raise LookupError("no PostgreSQL server binaries (initdb, pg_ctl) are installed")
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@contextmanager
def postgres_schema(admin_url: str, name: str) -> Iterator[str]:
    """A schema of our own on a shared PostgreSQL server, dropped afterwards; yields its URL."""
    engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    url = sa.engine.make_url(admin_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        engine.dispose()


# ---- the scenarios ---------------------------------------------------------------------------


@dataclass
class CrashReport:
    crashes: int
    ledger: Ledger
    answers: Counter[str]
    integrity: str = "n/a"
    fk_violations: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    bad_log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.ledger.acknowledged} acknowledged of {self.ledger.attempted} sent, "
                f"{self.crashes} SIGKILLs, {len(self.ledger.lost)} lost, {len(self.ledger.duplicated)} doubled, "
                f"{len(self.ledger.mangled)} mangled, integrity {self.integrity}; answers {dict(self.answers)}")


def crash_run(database_url: str, workdir: Path, *, seconds: float, min_crashes: int = 5,
              posters: int = 8, workers: int = 2, seed: int | None = None,
              log: Callable[[str], None] = lambda _line: None) -> CrashReport:
    """Post at full speed while the whole server is SIGKILLed at random moments and restarted;
    then hold every acknowledged comment against the database."""
    rng = random.Random(seed)
    run = f"crash{rng.randrange(10**6)}"
    env = server_env(database_url)
    server = Server(env, workdir, workers=workers)
    load = Load(server.base, run, posters=posters, timeout=30)
    crashes = 0
    restarts = []
    with server:
        restarts.append(server.start())
        load.start()
        try:
            deadline = time.monotonic() + seconds
            while crashes < min_crashes or time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 2.0))
                server.kill()
                crashes += 1
                restarts.append(server.start())
                log(f"crash {crashes}: {len(load.acknowledged())} acknowledged so far")
            time.sleep(0.5)
        finally:
            load.stop()
    report = CrashReport(crashes, check_ledger(run, load.acknowledged(), load.attempted(),
                                               stored_comments(settings_from(env))),
                         statuses(load.outcomes), restart_seconds=restarts, bad_log=bad_log_lines(server.log_text()))
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        report.integrity, report.fk_violations = sqlite_checks(Path(url.database))
    return report


@dataclass
class ContentionReport:
    seconds: float
    answers: Counter[str]
    by_kind: dict[str, Counter[str]]
    ledger: Ledger
    locked_answers: int
    bulk_updated: int
    integrity: str
    bad_log: list[str]

    def summary(self) -> str:
        return (f"{self.seconds:.0f} s: {self.ledger.acknowledged} comments acknowledged, "
                f"{self.bulk_updated} status changes in bulk, answers {dict(self.answers)}, "
                f"'database is locked' {self.locked_answers}, integrity {self.integrity}")


def _moderate(token: str, updated: list[int]) -> Callable[[Load, httpx.Client], None]:
    """A moderator's loop: take the queue, approve most of it in bulk, trash or spam the rest."""
    rng = random.Random()

    def work(load: Load, client: httpx.Client) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        listed = load.call(client, "admin-list", "GET", "/api/admin/comments",
                           params={"status": "pending", "limit": "200"}, headers=headers)
        if listed.status != 200:
            return
        ids = load.acknowledged_sample(rng, 60)
        if not ids:
            time.sleep(0.05)
            return
        status = rng.choice(["approved", "approved", "approved", "trash", "spam", "pending"])
        done = load.call(client, "bulk", "POST", "/api/admin/comments/bulk",
                         json={"ids": ids, "status": status}, headers=headers)
        if done.status == 200:
            updated.append(len(ids))
        load.call(client, "admin-patch", "PATCH", f"/api/admin/comments/{ids[0]}",
                  json={"status": rng.choice(STATUSES)}, headers=headers)

    return work


def contention_run(database_url: str, workdir: Path, *, seconds: float, workers: int = 4, posters: int = 8,
                   readers: int = 2, moderators: int = 2) -> ContentionReport:
    """Every worker writing to one database at full speed while moderators change statuses in bulk
    and readers read."""
    run = f"busy{random.randrange(10**6)}"
    env = server_env(database_url)
    server = Server(env, workdir, workers=workers)
    updated: list[int] = []
    with server:
        server.start()
        token = server.token("contention")
        load = Load(server.base, run, posters=posters, readers=readers, timeout=60,
                    extra=[_moderate(token, updated) for _ in range(moderators)])
        begin = time.monotonic()
        load.start()
        try:
            time.sleep(seconds)
        finally:
            load.stop()
        elapsed = time.monotonic() - begin
    by_kind: dict[str, Counter[str]] = {}
    for outcome in load.outcomes:
        by_kind.setdefault(outcome.kind, Counter())[str(outcome.status or outcome.error)] += 1
    integrity = "n/a"
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        integrity = sqlite_checks(Path(url.database))[0]
    return ContentionReport(
        elapsed, statuses(load.outcomes), by_kind,
        check_ledger(run, load.acknowledged(), load.attempted(), stored_comments(settings_from(env))),
        sum("database is locked" in o.text for o in load.outcomes), sum(updated), integrity,
        bad_log_lines(server.log_text()),
    )


@dataclass
class OutageReport:
    outcomes: list[Outcome]
    stop_began: float
    stopped: float
    start_began: float
    started: float
    ledger: Ledger
    bad_log: list[str]
    dropped_backends: int = 0

    def during(self) -> list[Outcome]:
        """Requests sent and answered while the database was down."""
        return [o for o in self.outcomes if o.start >= self.stopped and o.end <= self.start_began]

    def around(self) -> list[Outcome]:
        """Requests that overlapped the outage at all."""
        return [o for o in self.outcomes if o.end >= self.stop_began and o.start <= self.started]

    def recovered_after(self) -> float | None:
        """Seconds from the database answering again to the first comment acknowledged."""
        firsts = [o.end for o in self.outcomes
                  if o.kind == "post" and o.status in (201, 202) and o.start >= self.started]
        return min(firsts) - self.started if firsts else None

    def summary(self) -> str:
        during = self.during()
        slowest = max((o.end - o.start for o in self.outcomes), default=0.0)
        return (f"{len(self.outcomes)} requests, {len(during)} during the outage "
                f"({dict(statuses(during))}), 500s: {statuses(self.outcomes)['500']}, "
                f"slowest answer {slowest:.2f} s, first comment {self.recovered_after() or -1:.2f} s after the "
                f"database came back, {self.ledger.acknowledged} acknowledged, {len(self.ledger.lost)} lost")


def _terminate_backends(url: str) -> int:
    """Drop every other client connection, mid-transaction or not (what a failover does)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            return len(conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").all())
    finally:
        engine.dispose()


def _health(load: Load, client: httpx.Client) -> None:
    load.call(client, "healthz", "GET", "/healthz")
    time.sleep(0.05)


def _admin_reader(token: str) -> Callable[[Load, httpx.Client], None]:
    def work(load: Load, client: httpx.Client) -> None:
        load.call(client, "admin-list", "GET", "/api/admin/comments", params={"status": "pending", "limit": "50"},
                  headers={"Authorization": f"Bearer {token}"})
        time.sleep(0.05)

    return work


def outage_run(pg: PrivatePostgres, workdir: Path, *, down_seconds: float = 5, db_timeout: float = 2,
               before: float = 3, after: float = 8, workers: int = 2) -> OutageReport:
    """Load the service, drop its connections, stop PostgreSQL for a while, start it again."""
    run = f"outage{random.randrange(10**6)}"
    with postgres_schema(pg.url, run) as url:
        return _outage(pg, url, run, workdir, down_seconds, db_timeout, before, after, workers)


def _outage(pg: PrivatePostgres, url: str, run: str, workdir: Path, down_seconds: float, db_timeout: float,
            before: float, after: float, workers: int) -> OutageReport:
    env = server_env(url, db_timeout_seconds=str(db_timeout))
    server = Server(env, workdir, workers=workers)
    with server:
        server.start()
        token = server.token("outage")
        load = Load(server.base, run, posters=4, readers=2, timeout=60,
                    extra=[_health, _admin_reader(token)])
        load.start()
        try:
            time.sleep(before / 2)
            dropped = 0
            for _ in range(3):  # connections dropped under the service, mid-transaction or not
                time.sleep(before / 6)
                dropped += _terminate_backends(pg.url)
            stop_began = time.monotonic()
            pg.stop("fast")
            stopped = time.monotonic()
            time.sleep(down_seconds)
            start_began = time.monotonic()
            pg.start()
            started = time.monotonic()
            time.sleep(after)
        finally:
            load.stop()
            if not pg.running():
                pg.start()
    ledger = check_ledger(run, load.acknowledged(), load.attempted(), stored_comments(settings_from(env)))
    return OutageReport(load.outcomes, stop_began, stopped, start_began, started, ledger,
                        bad_log_lines(server.log_text()), dropped)
