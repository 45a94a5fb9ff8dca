"""Server processes for the benchmark: free ports, start and wait until they answer, memory, stop."""

from __future__ import annotations

import errno
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(Exception):
    """A problem the benchmark explains in one message instead of a traceback."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port(port: int) -> None:
    """BenchError if the port is taken (or cannot be used) on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: only a listener counts
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BenchError(f"port {port} is taken on 127.0.0.1: stop what listens there, or pass "
                                 "another --port") from None
            raise BenchError(f"cannot use port {port} on 127.0.0.1: {exc.strerror}") from None


def http_get(url: str, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


@dataclass
class Server:
    """One server under test, started in its own process group so it stops with all its workers."""

    name: str
    command: Sequence[str]
    port: int
    env: dict[str, str]
    cwd: Path
    ready_path: str = "/healthz"
    log: Path = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log = self.cwd / f"{self.name.replace(' ', '-')}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        check_port(self.port)
        try:
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(list(self.command), cwd=self.cwd, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        except OSError as exc:
            raise BenchError(f"{self.name}: cannot run {self.command[0]}: {exc.strerror}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise BenchError(f"{self.name} did not start (it exited with code {code}); the end of its log:\n"
                                 + self.log_tail())
            try:
                status, _, _ = http_get(self.url + self.ready_path, timeout=2)
                if status < 500:
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s; the end of its "
                         "log:\n" + self.log_tail())

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"

    def workers(self) -> list[int]:
        """The process ids that serve requests: the master's children (uvicorn and gunicorn alike),
        without multiprocessing's helper process."""
        if self.process is None:
            return []
        found = []
        for pid in _children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                found.append(pid)
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    result: list[int] = []
    for task in tasks:
        try:
            result += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return result


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time the processes have used so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks
