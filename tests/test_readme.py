"""The README's walk-through, pasted into a shell against a real server, does what it says."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import TEST_EMAIL_KEY

README = Path(__file__).resolve().parents[1] / "README.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def walkthrough() -> str:
    text = README.read_text()
    section = text[text.index("## A walk-through with curl"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the walk-through has a sh block"
    return match.group(1)


@pytest.mark.slow
def test_the_walkthrough_works_when_pasted_into_a_shell(tmp_path: Path) -> None:
    port = free_port()
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "comments").symlink_to(Path(sys.executable).parent / "comments")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
    env.update(COMMENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'comments.db'}", COMMENTS_EMAIL_KEY=TEST_EMAIL_KEY)
    server = subprocess.Popen(
        [str(bin_dir / "comments"), "serve", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        script = walkthrough().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        last = done.stdout[done.stdout.rindex('{"page":'):]  # curl prints no newline of its own
        thread = json.loads(last)
        assert thread["total"] == 1
        assert thread["comments"][0]["author"] == "Ann"
        assert "ann@example.org" not in last
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
