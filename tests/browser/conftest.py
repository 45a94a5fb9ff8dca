"""Browser tests: the real service in a subprocess, driven by Playwright in a headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def find_chromium() -> str | None:
    """A Chromium to drive: $COMMENTS_CHROMIUM, /usr/bin/chromium, or one on the PATH."""
    for candidate in (os.environ.get("COMMENTS_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real browser against the running service")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if find_chromium() is None:
        reason = "no Chromium executable (set COMMENTS_CHROMIUM or install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is not installed"
    if reason:
        for item in items:
            if HERE in Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = Path(sys.executable).with_name("comments")
    return [str(script)] if script.exists() else [sys.executable, "-m", "comments.cli"]


class Site:
    """The embedding site on another origin (localhost; the service is 127.0.0.1): the tests' pages."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.pages: dict[str, tuple[bytes, dict[str, str]]] = {}

    def add(self, path: str, html: str, headers: dict[str, str]) -> str:
        """Serve html at path; returns the page's URL."""
        self.pages[path] = (html.encode(), headers)
        return self.origin + path


@dataclass
class Service:
    """The running service and a moderator's HTTP client for seeding threads."""

    url: str
    token: str
    log: Path
    site: Site
    http: httpx.Client = field(repr=False)

    def post(self, page: str, body: str, author: str = "Ann", *, parent: int | None = None,
             url: str | None = None, approve: bool = True) -> dict[str, Any]:
        """Leave a comment through the public API and, unless told not to, approve it."""
        payload: dict[str, Any] = {"page": page, "body": body, "author": author,
                                   "email": f"seed.{time.monotonic_ns()}@example.org"}
        if parent:
            payload["parent"] = parent
        if url:
            payload["url"] = url
        answer = self.http.post("/api/comments", json=payload)
        assert answer.status_code in (201, 202), answer.text
        comment = answer.json()
        if approve:
            self.admin("PATCH", f"/api/admin/comments/{comment['id']}", json={"status": "approved"})
        return comment

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        auth = {"Authorization": f"Bearer {self.token}"}
        answer = self.http.request(method, path, headers=auth, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None


class _SiteHandler(BaseHTTPRequestHandler):
    server: _SiteServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body, headers = self.server.site.pages.get(self.path.split("?")[0], (b"not found", {}))
        self.send_response(200 if headers else 404)
        for name, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    server = _SiteServer(("127.0.0.1", 0), _SiteHandler)
    server.site = Site(f"http://localhost:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.site
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Iterator[Service]:
    """`comments serve` on a free port with a fresh SQLite database, demo mode on, flood control off."""
    tmp = tmp_path_factory.mktemp("service")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "COMMENTS_DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite'}",
        "COMMENTS_DEMO": "1",
        "COMMENTS_SITE_ORIGINS": f"{url},{site.origin}",
        "COMMENTS_RATE_LIMIT": "1000/minute",
    }
    command = _command()
    subprocess.run([*command, "db", "upgrade"], env=env, cwd=tmp, check=True, capture_output=True,
                   timeout=60)
    made = subprocess.run([*command, "token", "create", "browser-tests"], env=env, cwd=tmp,
                          check=True, capture_output=True, text=True, timeout=60)
    token = made.stdout.strip().splitlines()[-1].split()[-1]
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=url, timeout=10)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"comments serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"comments serve did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.1)
        svc = Service(url, token, log, site, http)
        rules = svc.admin("GET", "/api/admin/rules")
        svc.admin("PUT", "/api/admin/rules", json={**rules, "flood_seconds": 0})
        yield svc
    finally:
        http.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def new_context(browser: Any) -> Iterator[Any]:
    """A factory of fresh browser contexts (separate storage: another reader), all closed after the test."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(**options)
        context.set_default_timeout(5000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture()
def context(new_context: Any) -> Any:
    return new_context()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
