"""Measure what spam scoring adds to POST /api/comments with a text model trained on 10,000 comments.

    python bench/spam_bench.py                      # 10,000 training comments, 2,000 timed posts
    python bench/spam_bench.py --train 2000 --posts 500 --keep DIR

Two fresh SQLite databases in a temporary directory: one trained with ``comments spam train`` on
10,000 labelled comments (the tuning files 01-03 of the labelled corpus beside the repository,
repeated with perturbed wording so the vocabulary grows as a real site's would; generated text when
the corpus is absent), one left empty (an untrained model is neutral and fetches no counts). A real
``comments serve`` process runs on each, on free ports; the same comments are posted to both, one
at a time, alternating between the servers so that load from elsewhere on the machine falls on both
alike. The difference between the two latency distributions is what scoring with the trained model
adds. Then ``Service.judge`` (features, the evidence query, scoring) is timed in-process on each
database over the same comments (once; as the best of a few runs per comment, which leaves out
the moments another process had the CPU; and as the thread's CPU time, which a busy machine does
not inflate), and the pure part (``features`` + ``text_probability`` on the same counts held in
memory) alone.
The servers are stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comments import spam, store  # noqa: E402
from comments.crypto import new_key  # noqa: E402
from comments.models import SpamFeature, SpamTotals  # noqa: E402
from comments.service import Service  # noqa: E402
from comments.settings import Settings  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "spam"
TRAIN_FILES = ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv", "Youtube03-LMFAO.csv")
POST_FILES = ("Youtube04-Eminem.csv", "Youtube05-Shakira.csv")
COMMAND = Path(sys.executable).parent / "comments"
WARMUP = 50


# ---- the comments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    author: str
    body: str
    is_spam: bool


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(count)]


def _read(names: Sequence[str], corpus: Path) -> list[Example]:
    rows = []
    for name in names:
        rows.extend(Example(r.author, r.content, r.is_spam) for r in spam.read_labelled_csv(corpus / name))
    return rows


def _generated(rng: random.Random, count: int) -> list[Example]:
    """Stand-in text when the corpus is absent: spam-like and ordinary sentences."""
    spam_words = "check out my channel subscribe free gift money visit website click win".split()
    ham_words = "song video love voice chorus remember school listening still best great".split()
    rows = []
    for i in range(count):
        is_spam = i % 2 == 0
        words = [rng.choice(spam_words if is_spam else ham_words) for _ in range(rng.randint(5, 25))]
        if is_spam and i % 6 == 0:
            words.append(f"http://promo{i % 40}.example.com")
        rows.append(Example(f"Author {i % 97}", " ".join(words), is_spam))
    return rows


def perturbed(base: Sequence[Example], count: int, rng: random.Random, vocabulary: Sequence[str]) -> Iterator[Example]:
    """`count` examples: the base ones first as they are, then again and again with words added,
    dropped and swapped, so each copy brings new words, pairs and n-grams."""
    for n in range(count):
        example = base[n % len(base)]
        copy = n // len(base)
        if copy == 0:
            yield example
            continue
        words = example.body.split()
        if len(words) > 3:
            del words[rng.randrange(len(words))]
        for _ in range(rng.randint(1, 4)):
            words.insert(rng.randint(0, len(words)), rng.choice(vocabulary))
        yield Example(f"{example.author} {rng.choice(vocabulary)}", " ".join(words) or "x", example.is_spam)


def write_training_csv(path: Path, examples: Iterator[Example]) -> int:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"])
        n = 0
        for n, example in enumerate(examples, start=1):
            writer.writerow([f"bench{n}", example.author, "", example.body, "1" if example.is_spam else "0"])
    return n


# ---- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTS_")}
    env.update({
        "COMMENTS_DATABASE_URL": database_url,
        "COMMENTS_EMAIL_KEY": key,
        "COMMENTS_TRUSTED_PROXIES": "127.0.0.1",
        "COMMENTS_RATE_LIMIT": "1000000/minute",
        "COMMENTS_LOG_LEVEL": "WARNING",
    })
    return env


def cli(env: dict[str, str], cwd: Path, *argv: str) -> str:
    result = subprocess.run([str(COMMAND), *argv], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"comments {' '.join(argv[:2])} failed:\n{result.stderr}")
    return result.stdout


@dataclass
class Server:
    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str


def start(name: str, env: dict[str, str], folder: Path) -> Server:
    token = cli(env, folder, "token", "create", "bench").strip()
    port = free_port()
    log = folder / f"{name}-server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(COMMAND), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=folder, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log, token)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the {name} server exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(server.base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the {name} server did not answer within 60 s")
        time.sleep(0.1)
    headers = {"Authorization": f"Bearer {token}"}
    rules = httpx.get(server.base + "/api/admin/rules", headers=headers).json()
    answer = httpx.put(server.base + "/api/admin/rules", headers=headers, json={**rules, "flood_seconds": 0})
    answer.raise_for_status()
    return server


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


# ---- measuring -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p99, mean) in milliseconds."""
    ms = [v * 1000 for v in values]
    return percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms)


def posts(examples: Sequence[Example]) -> list[dict[str, str]]:
    return [{"page": f"/bench/{i % 40}", "author": e.author.strip() or "anonymous", "email": f"poster{i}@bench.example",
             "body": e.body.strip() or "(empty)"} for i, e in enumerate(examples)]


def post_all(servers: Sequence[Server], bodies: Sequence[dict[str, str]]) -> dict[str, list[float]]:
    """Post every comment to every server, alternating; the latency of each (after a warm-up)."""
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    clients = {s.name: httpx.Client(base_url=s.base, timeout=30) for s in servers}
    try:
        for i, body in enumerate(bodies):
            forwarded = {"X-Forwarded-For": f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}"}
            for server in servers if i % 2 == 0 else list(reversed(servers)):
                start = time.perf_counter()
                answer = clients[server.name].post("/api/comments", json=body, headers=forwarded)
                elapsed = time.perf_counter() - start
                if answer.status_code not in (201, 202):
                    raise SystemExit(f"{server.name}: POST answered {answer.status_code}: {answer.text[:300]}")
                if i >= WARMUP:
                    times[server.name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    return times


def judge_times(settings: dict[str, Settings], bodies: Sequence[dict[str, str]],
                repeat: int) -> dict[str, dict[str, list[float]]]:
    """Service.judge on each database, alternating, each comment `repeat` times. Per comment: the
    first run's wall time ("once"), the best run's ("best"; it leaves out the moments another
    process had the CPU) and the first run's CPU time of this thread ("cpu"; SQLite runs in-process,
    so this is the judge's own work, whatever the machine's load)."""
    services = {name: Service(s) for name, s in settings.items()}
    out: dict[str, dict[str, list[float]]] = {kind: {name: [] for name in services} for kind in ("once", "best", "cpu")}
    try:
        now = store.utcnow()
        for i, body in enumerate(bodies):
            wall: dict[str, list[float]] = {name: [] for name in services}
            cpu: dict[str, list[float]] = {name: [] for name in services}
            for r in range(repeat):
                for name, service in (services.items() if (i + r) % 2 == 0 else reversed(services.items())):
                    ip = f"10.9.{i // 250 % 250}.{i % 250 + 1}"
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    service.judge(body["email"], body["author"], None, ip, body["body"], body["page"], now)
                    cpu[name].append(time.thread_time() - start_cpu)
                    wall[name].append(time.perf_counter() - start)
            if i >= WARMUP:
                for name in services:
                    out["once"][name].append(wall[name][0])
                    out["best"][name].append(min(wall[name]))
                    out["cpu"][name].append(cpu[name][0])
        return out
    finally:
        for service in services.values():
            service.db.dispose()


def pure_times(counts: spam.MemoryCounts, bodies: Sequence[dict[str, str]], repeat: int) -> list[float]:
    """features + text_probability + combine on a model held in memory (best of `repeat`)."""
    out = []
    for i, body in enumerate(bodies):
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            feats = spam.features(body["body"], body["author"], None)
            spam.combine([spam.text_signal(spam.text_probability(counts.model(feats), feats)),
                          spam.link_signal(spam.count_links(body["body"]), len(body["body"]))])
            runs.append(time.perf_counter() - start)
        if i >= WARMUP:
            out.append(min(runs))
    return out


def model_size(settings: Settings) -> tuple[int, int, int]:
    """(features, spam documents, ham documents) of a database's text model."""
    service = Service(settings)
    try:
        with service.db.read() as conn:
            features = conn.execute(sa.select(sa.func.count()).select_from(SpamFeature.__table__)).scalar_one()
            totals = conn.execute(sa.select(SpamTotals.__table__.c.spam_docs, SpamTotals.__table__.c.ham_docs)).first()
        return int(features), int(totals[0]) if totals else 0, int(totals[1]) if totals else 0
    finally:
        service.db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=10_000, help="training comments (default 10,000)")
    parser.add_argument("--posts", type=int, default=2_000, help="comments posted to each server (default 2,000)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of the labelled corpus")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (databases, logs)")
    parser.add_argument("--repeat", type=int, default=5, help="in-process runs per comment (default 5)")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    if args.posts <= WARMUP:
        parser.error(f"--posts must be above the {WARMUP} warm-up posts")

    rng = random.Random(args.seed)
    vocabulary = _pseudo_words(rng, 20_000)
    have_corpus = all((args.corpus / n).is_file() for n in TRAIN_FILES + POST_FILES)
    train_base = _read(TRAIN_FILES, args.corpus) if have_corpus else _generated(rng, 1_000)
    post_base = _read(POST_FILES, args.corpus) if have_corpus else _generated(rng, 500)
    bodies = posts(list(perturbed(post_base, args.posts, rng, vocabulary)))

    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="spam-bench-")
    folder = args.keep or Path(holder.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    key = new_key()
    urls = {name: f"sqlite:///{folder / (name + '.db')}" for name in ("trained", "empty")}
    servers: list[Server] = []
    load_before = os.getloadavg()[0]
    try:
        envs = {name: environment(url, key) for name, url in urls.items()}
        for env in envs.values():
            cli(env, folder, "db", "upgrade")
        csv_path = folder / "training.csv"
        written = write_training_csv(csv_path, perturbed(train_base, args.train, rng, vocabulary))
        started = time.perf_counter()
        cli(envs["trained"], folder, "spam", "train", str(csv_path))
        train_seconds = time.perf_counter() - started
        settings = {name: Settings(_env_file=None, database_url=url, email_key=key)
                    for name, url in urls.items()}
        features, spam_docs, ham_docs = model_size(settings["trained"])

        for name in ("empty", "trained"):
            servers.append(start(name, envs[name], folder))
        http = post_all(servers, bodies)
        for server in servers:
            stop(server)
        servers = []

        judged = judge_times(settings, bodies, args.repeat)
        in_memory = spam.MemoryCounts()
        for row in spam.read_labelled_csv(csv_path):
            in_memory.learn(spam.features(row.content, row.author, None), row.is_spam)
        pure = {"empty": pure_times(spam.MemoryCounts(), bodies, args.repeat),
                "trained": pure_times(in_memory, bodies, args.repeat)}
    finally:
        for server in servers:
            stop(server)
        if holder is not None:
            holder.cleanup()

    source = "corpus files 01-03, perturbed" if have_corpus else "generated text"
    print(f"model: {written} training comments ({source}) learned in {train_seconds:.1f} s: "
          f"{features} features, {spam_docs} spam / {ham_docs} not spam")
    print(f"timed: {args.posts - WARMUP} comments per row after {WARMUP} warm-up, one at a time, "
          "one uvicorn worker per server, SQLite synchronous=FULL")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after (p99 on a busy machine measures the machine)")
    print()
    print(f"{'':52}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for label, table in (("POST /api/comments", http), ("Service.judge in-process", judged["once"]),
                         (f"Service.judge, best of {args.repeat}", judged["best"]),
                         ("Service.judge, CPU time", judged["cpu"]),
                         (f"features + scoring alone, best of {args.repeat}", pure)):
        empty, trained = summary(table["empty"]), summary(table["trained"])
        print(f"{label + ', empty model':52}{empty[0]:9.2f}{empty[1]:9.2f}{empty[2]:9.2f}")
        print(f"{label + ', trained model':52}{trained[0]:9.2f}{trained[1]:9.2f}{trained[2]:9.2f}")
        print(f"{'  added by the trained model':52}{trained[0] - empty[0]:9.2f}{trained[1] - empty[1]:9.2f}"
              f"{trained[2] - empty[2]:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
