"""The peer: Isso 0.14 under gunicorn with 2 workers, moderation on and its rate limit off (`make bench-peers`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from servers import BenchError, Server

HERE = Path(__file__).resolve().parent
ISSO_VENV = HERE / ".peers" / "isso-venv"
INSTALL_HINT = "run `make bench-peers` to install it"


def isso_installed() -> str | None:
    """None when Isso and gunicorn are installed, else why not."""
    python = ISSO_VENV / "bin" / "python"
    if not (python.exists() and (ISSO_VENV / "bin" / "gunicorn").exists()):
        return f"Isso is not installed in {ISSO_VENV.relative_to(HERE.parent)}: {INSTALL_HINT}"
    done = subprocess.run([str(python), "-c", "import isso; print(isso.__version__ if hasattr(isso, '__version__') "
                           "else '?')"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"Isso does not import in its environment ({done.stderr.strip().splitlines()[-1:]}): {INSTALL_HINT}"
    return None


def isso_config(workdir: Path, port: int) -> Path:
    """Isso's configuration for the benchmark: its defaults, except moderation on, the guard (its rate
    limit) off, and old pending comments kept."""
    path = workdir / "isso.cfg"
    path.write_text(
        "[general]\n"
        f"dbpath = {workdir / 'isso.db'}\n"
        "host = http://127.0.0.1:9/\n"  # nothing listens there: Isso's start-up check fails at once
        "notify = stdout\n"
        "gravatar = false\n"
        "[moderation]\n"
        "enabled = true\n"
        # Isso deletes comments pending for longer than this at start; the seeded ones must stay.
        "purge-after = 3650d\n"
        "[server]\n"
        f"listen = http://127.0.0.1:{port}/\n"
        "trusted-proxies = 127.0.0.1\n"
        "[guard]\n"
        "enabled = false\n"
    )
    return path


def prepare_isso(workdir: Path, port: int, size: int, pages: int, big_thread: int) -> Server:
    """A seeded Isso database and the gunicorn command to serve it (not started)."""
    config = isso_config(workdir, port)
    seeded = subprocess.run([str(ISSO_VENV / "bin" / "python"), str(HERE / "isso_seed.py"), str(config), str(size),
                             str(pages), str(big_thread)],
                            capture_output=True, text=True, cwd=workdir)
    if seeded.returncode != 0:
        raise BenchError("seeding Isso's database failed: " + (seeded.stderr.strip().splitlines() or ["?"])[-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMENTS_", "ISSO_"))}
    env["ISSO_SETTINGS"] = str(config)
    command = [str(ISSO_VENV / "bin" / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", "isso.run"]
    return Server("isso", command, port, env, workdir, ready_path="/?uri=%2F2024%2F01%2Farticle-000%2F")
