"""Driving load with wrk: the Lua data file for a target, one wrk run, and the median of several."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from servers import BenchError

SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
SCENARIOS = ("read", "revalidate", "post")
LABELS = {"read": "thread read (30 comments)", "revalidate": "revalidation (304)", "post": "comment accepted"}


@dataclass(frozen=True)
class ClientSettings:
    """The same for every target: wrk threads, connections, run length, runs, warm-up."""

    threads: int = 2
    connections: int = 64
    duration: float = 15.0
    runs: int = 3
    warmup: float = 2.0
    timeout: float = 10.0


@dataclass(frozen=True)
class Run:
    """One wrk run's figures (latencies in milliseconds)."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    statuses: dict[str, int]
    server_cpu_us: float | None = None  # CPU time the server's workers used per request


@dataclass(frozen=True)
class Figure:
    """The median of several runs, each figure taken on its own, with the runs kept."""

    rps: float
    p50_ms: float
    p99_ms: float
    runs: list[Run]
    server_cpu_us: float | None = None

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    def statuses(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs:
            for status, n in run.statuses.items():
                total[status] = total.get(status, 0) + n
        return total

    def to_json(self) -> dict[str, Any]:
        return {"rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 2), "p99_ms": round(self.p99_ms, 2),
                "server_cpu_us": None if self.server_cpu_us is None else round(self.server_cpu_us),
                "statuses": self.statuses(), "runs": [asdict(r) for r in self.runs]}


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: `make bench` installs it (apt-get install -y wrk), or install "
                         "Debian's package `wrk` yourself")
    return path


def lua_string(text: str) -> str:
    """A Lua string literal for any text (bytes outside printable ASCII as decimal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\' or byte < 32 or byte > 126:
            out.append(f"\\{byte:03d}" if char not in '"\\' else "\\" + char)
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def json_inner(text: str) -> str:
    """text as the inside of a JSON string (ASCII only, no quotes around it)."""
    return json.dumps(text, ensure_ascii=True)[1:-1]


def write_data(path: Path, api: str, pages: Sequence[str], reads: Sequence[str], etags: Sequence[str],
               posts: Sequence[str], bodies: Sequence[str]) -> Path:
    """The Lua table that wrk.lua loads (see its header)."""
    def table(items: Sequence[str]) -> str:
        return "{" + ",\n".join(lua_string(i) for i in items) + "}"

    path.write_text(
        "return {\n"
        f"api = {lua_string(api)},\n"
        f"pages = {table([json.dumps(p, ensure_ascii=True) for p in pages])},\n"
        f"reads = {table(reads)},\n"
        f"etags = {table(etags)},\n"
        f"posts = {table(posts)},\n"
        f"bodies = {table([json_inner(b) for b in bodies])},\n"
        "}\n"
    )
    return path


def comments_paths(pages: Sequence[str]) -> tuple[list[str], list[str]]:
    """(read paths, post paths) of our API (and the ceiling's)."""
    return [f"/api/comments?page={quote(p, safe='')}" for p in pages], ["/api/comments"] * len(pages)


def isso_paths(pages: Sequence[str]) -> tuple[list[str], list[str]]:
    """(read paths, post paths) of Isso's API."""
    return [f"/?uri={quote(p, safe='')}" for p in pages], [f"/new?uri={quote(p, safe='')}" for p in pages]


def run_wrk(url: str, mode: str, data: Path, seed: int, seconds: float, client: ClientSettings) -> Run:
    """One wrk run; BenchError when wrk fails or prints no figures."""
    command = [wrk_path(), f"-t{client.threads}", f"-c{client.connections}", f"-d{max(1, round(seconds))}s",
               f"--timeout={int(client.timeout)}s", "--latency", "-s", str(SCRIPT), url,
               "--", f"mode={mode}", f"data={data}", f"seed={seed}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + client.timeout + 60)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        output = (done.stderr.strip() or done.stdout.strip())[-800:]
        raise BenchError(f"wrk failed against {url} ({mode}): {output}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    secs = raw["duration_us"] / 1e6
    return Run(
        requests=raw["requests"], seconds=round(secs, 3), rps=raw["requests"] / secs if secs else 0.0,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000, errors=raw["errors"], statuses={str(k): v for k, v in raw["statuses"].items()},
    )


def median(runs: Sequence[Run]) -> Figure:
    cpu = [r.server_cpu_us for r in runs if r.server_cpu_us is not None]
    return Figure(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        runs=list(runs),
        server_cpu_us=statistics.median(cpu) if cpu else None,
    )
