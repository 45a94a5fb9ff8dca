"""Where the time goes: py-spy samples of a worker under load, summarised by own and total time.

    python bench/profiles.py FILE.txt [--top 25]    # summarise a py-spy `--format raw` file

run.py calls `record` during an extra, unmeasured wrk run when given --profile DIR (and
--profile-wall for every busy thread instead of the GIL holder).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_IDLE = ("Condition.wait (", "Queue.get (", "select (", "Event.wait (", "Connection._recv (multiprocessing")
# Own time by where the code lives: the first marker found in a frame's file names its area.
_AREAS = [
    ("comments/", "comments (our code)"), ("sqlalchemy/", "SQLAlchemy"), ("sqlite", "SQLite driver"),
    ("psycopg", "psycopg"), ("starlette/", "Starlette"), ("anyio/", "anyio (threadpool)"),
    ("uvicorn/", "uvicorn"), ("asyncio/runners.py", "event loop (uvloop, C: sockets, HTTP parsing)"),
    ("asyncio/", "asyncio"), ("logging/", "logging"), ("bleach/", "bleach/html5lib"),
    ("html5lib/", "bleach/html5lib"), ("email_validator/", "email-validator"), ("orjson", "orjson"),
    ("threading.py", "threads (locks, conditions)"), ("pydantic", "pydantic/SQLModel"),
    ("sqlmodel/", "pydantic/SQLModel"), ("cryptography/", "cryptography"),
]
_MARKER = re.compile(r"^(process \d+|thread \(0x[0-9a-fA-F]+\))")  # added by --subprocesses, --threads
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """py-spy from the PATH or beside this Python, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, output: Path, gil: bool = True) -> subprocess.Popen[bytes] | None:
    """Start sampling a process at 100 Hz; None without py-spy. With gil, only the thread that holds
    the GIL is sampled: where the worker's CPU goes. Without, every busy thread: where requests
    wait too (a thread waiting inside SQLite for its lock counts)."""
    tool = py_spy()
    if tool is None:
        return None
    return subprocess.Popen(
        [tool, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "100",
         "--format", "raw", "--output", str(output), *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _area(frame: str) -> str:
    where = frame[frame.rfind("(") + 1:]
    return next((name for marker, name in _AREAS if marker in where), "other: " + where.rstrip(")"))


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", "/comments/", "/bench/"):
        if marker in path:
            path = path.split(marker, 1)[1] if marker != "/comments/" else "comments/" + path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(path: Path, top: int = 25) -> str:
    """Own time (the innermost frame) and total time (anywhere on the stack) per function, in % of samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f and not _MARKER.match(f)]
        if not frames or frames[-1].startswith(_IDLE):
            continue  # a thread waiting for work, should py-spy not have left it out
        samples += n
        own[frames[-1]] += n
        areas[_area(frames[-1])] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {samples} samples of busy threads", "  own time by area:"]
    lines += [f"    {100 * n / samples:5.1f} %  {a}" for a, n in areas.most_common()]
    lines.append("  own time:")
    lines += [f"    {100 * n / samples:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines.append("  total time (with callees) of our own functions:")
    lines += [f"    {100 * n / samples:5.1f} %  {f}" for f, n in total.most_common() if "(comments/" in f][:top]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for file in args.files:
        print(summarise(file, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
