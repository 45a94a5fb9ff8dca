"""The delivery worker with real parts: a real HTTP receiver on loopback (and, for the other
notification tests, a real SMTP server process), two workers at once, a worker that dies holding a
claim, the worker inside the app, and `comments worker`. The helpers here serve test_mail.py and
test_webhooks.py too."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from comments import store
from comments.app import create_app
from comments.notify.worker import Worker
from comments.service import Service
from comments.settings import Settings
from comments.store import outbox
from conftest import Clients, TEST_EMAIL_KEY, comment, post


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- a real SMTP server: aiosmtpd in its own process, keeping what it receives in a Maildir ----


class MailServer:
    """`python -m aiosmtpd` on a loopback port; stop() and start() again simulate an outage."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MailServer:
        log = (self.folder.parent / f"smtp-{self.port}.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
                 "-c", "aiosmtpd.handlers.Mailbox", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(3) == b"220":
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the SMTP server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def messages(self) -> list[EmailMessage]:
        """What arrived, oldest first (Maildir names start with the time of arrival)."""
        files = sorted(f for sub in ("new", "cur") for f in (self.folder / sub).glob("*"))
        found = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
        return found  # type: ignore[return-value]

    def clear(self) -> None:
        for sub in ("new", "cur"):
            for item in (self.folder / sub).glob("*"):
                item.unlink()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[union-attr]


# ---- a real HTTP receiver on loopback --------------------------------------------------------


class Receiver:
    """A threaded HTTP server that records every request, answers from a script of statuses
    (then 200), and notes how many requests for one delivery were in flight at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.script: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.inflight: Counter[str] = Counter()
        self.overlap = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = self.headers.get("X-Comments-Delivery", "")
                with receiver.lock:
                    receiver.inflight[delivery] += 1
                    receiver.overlap = max(receiver.overlap, receiver.inflight[delivery])
                    status = receiver.script.pop(0) if receiver.script else 200
                try:
                    time.sleep(receiver.delay)
                    with receiver.lock:
                        receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                                  "status": status})
                    self.send_response(status)
                    if status in (301, 302, 307):
                        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                finally:
                    with receiver.lock:
                        receiver.inflight[delivery] -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def ok(self) -> list[dict[str, Any]]:
        """The requests answered with 2xx: what the receiver got."""
        return [r for r in self.requests if 200 <= r["status"] < 300]

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r["body"]) for r in self.ok()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


LOOPBACK = {"webhook_allowed_networks": "127.0.0.0/8"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK)


def hook(service: Service, receiver: Receiver, events: tuple[str, ...] = outbox.EVENTS,
         secret: str = "a-shared-secret-of-some-length") -> int:
    return int(outbox.add_webhook(service.db, receiver.url, list(events), secret, "moderator", store.utcnow())["id"])


# ---- the tests ------------------------------------------------------------------------------


async def test_two_workers_never_deliver_the_same_event_at_once(
    clients: Clients, service: Service, settings: Settings
) -> None:
    slow = Receiver(delay=0.05).start()
    try:
        hook(service, slow, ("comment.created",))
        for n in range(12):
            assert (await post(clients, page=f"/two/{n}")).status_code == 202
        # Two workers as two processes would be: each with its own engine and connections.
        services = [Service(settings), Service(settings)]
        workers = [Worker(s, name=f"w{i}", batch=2) for i, s in enumerate(services)]
        counts = [0, 0]

        def run(index: int) -> None:
            for _ in range(40):
                counts[index] += workers[index].run_once()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for other in services:
            other.db.dispose()
    finally:
        slow.stop()
    deliveries = [r["headers"]["X-Comments-Delivery"] for r in slow.requests]
    assert len(deliveries) == 12 and len(set(deliveries)) == 12, "every event once"
    assert slow.overlap == 1, "never the same event from two workers at the same time"
    assert sum(counts) == 12 and all(counts), counts  # both took part
    with service.db.read() as conn:
        assert {r.status for r in conn.execute(outbox.outbox_t.select()).all()} == {"done"}


async def test_a_crashed_workers_claim_lapses(clients: Clients, service: Service, receiver: Receiver) -> None:
    hook(service, receiver, ("comment.created",))
    await post(clients)
    now = store.utcnow()
    taken = outbox.claim(service.db, "dead-worker:1", now, 10, 60)  # claimed, then the worker dies
    assert len(taken) == 1
    survivor = Worker(service, name="survivor")
    assert survivor.run_once(now + timedelta(seconds=30)) == 0  # the claim still holds
    assert survivor.run_once(now + timedelta(seconds=61)) == 1
    assert len(receiver.ok()) == 1
    # The dead worker, were it to wake up, cannot overwrite the outcome.
    assert outbox.finish(service.db, taken[0], now, "late") == "lost"
    with service.db.read() as conn:
        row = conn.execute(outbox.outbox_t.select()).one()
    assert (row.status, row.attempts) == ("done", 2)


async def test_a_delivery_whose_worker_keeps_dying_fails(clients: Clients, service: Service, receiver: Receiver) -> None:
    hook(service, receiver, ("comment.created",))
    await post(clients)
    now = store.utcnow()
    for n in range(service.settings.outbox_max_tries):
        assert len(outbox.claim(service.db, f"crashing:{n}", now + timedelta(hours=n), 10, 60)) == 1
    Worker(service).run_once(now + timedelta(days=1))
    with service.db.read() as conn:
        row = conn.execute(outbox.outbox_t.select()).one()
    assert row.status == "failed" and "stopped during delivery" in row.last_error
    assert receiver.requests == []


async def in_app(app: Any, page: str, wait: float) -> None:
    """Post one comment to the app with its lifespan running (as under uvicorn), then let it run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.99", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.post("/api/comments", json=comment(page=page))
            assert answer.status_code == 202
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not app.state.receiver.ok():
            await asyncio.sleep(0.05)


async def test_the_worker_runs_inside_the_app(settings: Settings, receiver: Receiver) -> None:
    app = create_app(settings)
    app.state.receiver = receiver
    hook(app.state.service, receiver, ("comment.created",))
    await in_app(app, "/inside", 15)
    assert [e["comment"]["page"] for e in receiver.events()] == ["/inside"]


@pytest.mark.parametrize("settings_overrides", [{**LOOPBACK, "outbox_worker": False}])
async def test_serve_can_leave_delivery_to_a_separate_worker(settings: Settings, receiver: Receiver,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(settings)
    app.state.receiver = receiver
    hook(app.state.service, receiver, ("comment.created",))
    await in_app(app, "/outside", 1.5)
    assert receiver.requests == []  # nothing inside serve
    # `comments worker --once` in a fresh process-like setting: the outbox survived the restart.
    for name in [k for k in os.environ if k.startswith("COMMENTS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("COMMENTS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COMMENTS_EMAIL_KEY", TEST_EMAIL_KEY)
    monkeypatch.setenv("COMMENTS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    from comments.cli import main

    assert main(["worker", "--once"]) == 0
    assert "tried 1 deliveries" in capsys.readouterr().out
    assert [e["comment"]["page"] for e in receiver.events()] == ["/outside"]
