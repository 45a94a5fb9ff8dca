"""Measure the WordPress import on a generated 100,000-comment WXR file: parse rate, full import rate, peak memory.

    python bench/import_bench.py                        # 100,000 comments, parser alone
    python bench/import_bench.py --full                 # and the real import into SQLite, and a dry run
    python bench/import_bench.py --full --profile       # and where the reading process's time goes (cProfile)
    python bench/import_bench.py --full --postgres URL  # into a new schema on a PostgreSQL server instead
    python bench/import_bench.py --comments 20000 --html-share 1 --keep DIR

The file is written to a temporary directory (removed afterwards unless --keep): 50
comments per post, a third of them replies, a mix of statuses, a few pingbacks, bodies
of 100 to 1,500 characters with non-ASCII text, as WordPress writes them (CDATA). A share
of the bodies (--html-share, a quarter by default) carries inline HTML, a link and an
entity; the others are plain text. Plain text takes the sanitiser's fast path, and this
markup (simple inline tags, a plain link, two entities) its inline fast path; markup beyond
that goes through bleach (html5lib), which costs about twenty times more.

Rates are given per second of the clock and per CPU second of the process (the second does
not move with load from other processes on a shared machine). The parser alone is timed in
this process: one run with tracemalloc off (the rate), one with it on (Python's peak
allocation); ru_maxrss is the process's peak resident size.

With --full, `comments.importing.run` (the code behind `comments import wordpress`) imports
the file into a fresh, migrated SQLite database (with --postgres, a new schema on that server,
dropped afterwards), then a dry run reads it again; each runs
in a child process of its own, so its ru_maxrss is its own peak resident size (the
interpreter and every library included). That process reads the file; its worker processes
(one per core, up to four) render, encrypt and write, so the CPU seconds are given for it
and for its workers, and the rate per CPU second counts both; a worker's peak resident size
is given too (the largest). The rate counts every comment read (imported, skipped or
failed). The sanitiser's cost per body is measured apart, on a sample of the same bodies,
by path, with nh3 beside it when it is installed (for comparison only).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comments.importers import ImportedComment, Options, wordpress  # noqa: E402

HEADER = """<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0"
\txmlns:excerpt="http://wordpress.org/export/1.2/excerpt/"
\txmlns:content="http://purl.org/rss/1.0/modules/content/"
\txmlns:wfw="http://wellformedweb.org/CommentAPI/"
\txmlns:dc="http://purl.org/dc/elements/1.1/"
\txmlns:wp="http://wordpress.org/export/1.2/"
>
<channel>
\t<title>Benchmark blog</title>
\t<link>https://bench.example</link>
\t<wp:wxr_version>1.2</wp:wxr_version>
\t<wp:base_site_url>https://bench.example</wp:base_site_url>
\t<wp:base_blog_url>https://bench.example</wp:base_blog_url>
"""

ITEM = """\t<item>
\t\t<title><![CDATA[Post {post}]]></title>
\t\t<link>https://bench.example/{year}/{month:02d}/post-{post}/</link>
\t\t<pubDate>Sat, 14 Jan 2023 17:30:00 +0000</pubDate>
\t\t<dc:creator><![CDATA[editor]]></dc:creator>
\t\t<guid isPermaLink="false">https://bench.example/?p={post}</guid>
\t\t<description></description>
\t\t<content:encoded><![CDATA[<p>{text}</p>]]></content:encoded>
\t\t<wp:post_id>{post}</wp:post_id>
\t\t<wp:post_date_gmt><![CDATA[2023-01-14 17:30:00]]></wp:post_date_gmt>
\t\t<wp:comment_status><![CDATA[open]]></wp:comment_status>
\t\t<wp:post_name><![CDATA[post-{post}]]></wp:post_name>
\t\t<wp:status><![CDATA[publish]]></wp:status>
\t\t<wp:post_type><![CDATA[post]]></wp:post_type>
"""

COMMENT = """\t\t<wp:comment>
\t\t\t<wp:comment_id>{id}</wp:comment_id>
\t\t\t<wp:comment_author><![CDATA[{author}]]></wp:comment_author>
\t\t\t<wp:comment_author_email><![CDATA[{email}]]></wp:comment_author_email>
\t\t\t<wp:comment_author_url>{url}</wp:comment_author_url>
\t\t\t<wp:comment_author_IP><![CDATA[{ip}]]></wp:comment_author_IP>
\t\t\t<wp:comment_date><![CDATA[{local}]]></wp:comment_date>
\t\t\t<wp:comment_date_gmt><![CDATA[{gmt}]]></wp:comment_date_gmt>
\t\t\t<wp:comment_content><![CDATA[{body}]]></wp:comment_content>
\t\t\t<wp:comment_approved><![CDATA[{approved}]]></wp:comment_approved>
\t\t\t<wp:comment_type><![CDATA[{type}]]></wp:comment_type>
\t\t\t<wp:comment_parent>{parent}</wp:comment_parent>
\t\t\t<wp:comment_user_id>0</wp:comment_user_id>
\t\t</wp:comment>
"""

WORDS = ("the figures were revised again last week and the new estimate is higher than "
         "anyone expected; see <a href=\"https://source.example/report\">the report</a> and "
         "<em>table 3</em> for details. Спасибо за статью, очень интересно. ありがとう "
         "Ευχαριστώ πολύ. I disagree with the second paragraph &amp; the conclusion").split()
#: The same vocabulary without markup or entities: the text most readers write.
PLAIN_WORDS = [w for w in WORDS if not any(c in w for c in "<>&=")]
MARKUP = (' see <a href="https://source.example/report">the report</a>, <em>table 3</em> '
          "&amp; the notes &#8230;")


def generate(path: Path, comments: int, per_post: int = 50, seed: int = 10, html_share: float = 0.25) -> int:
    """Write a WXR file with this many comments; returns its size in bytes."""
    rng = random.Random(seed)
    authors = [(f"Reader {n} Ø", f"reader{n}@mail{n % 37}.example", f"https://r{n}.example/" if n % 3 else "")
               for n in range(2000)]
    start = datetime(2020, 1, 1)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        comment_id = 0
        post = 0
        while comment_id < comments:
            post += 1
            out.write(ITEM.format(post=post, year=2020 + post % 5, month=1 + post % 12, text="Body " * 20))
            first = comment_id + 1
            for _ in range(min(per_post, comments - comment_id)):
                comment_id += 1
                author, email, url = rng.choice(authors)
                when = start + timedelta(minutes=comment_id * 7)
                parent = rng.randrange(first, comment_id) if comment_id > first and rng.random() < 0.35 else 0
                roll = rng.random()
                approved = "1" if roll < 0.8 else "0" if roll < 0.9 else "spam" if roll < 0.95 else "trash"
                kind = "pingback" if rng.random() < 0.01 else "comment"
                words = [rng.choice(PLAIN_WORDS) for _ in range(rng.randint(15, 220))]
                if rng.random() < 0.15:
                    words.insert(rng.randrange(len(words)), "\n\n")  # a second paragraph
                body = " ".join(words)
                if rng.random() < html_share:
                    cut = rng.randrange(len(body) + 1)
                    body = body[:cut] + MARKUP + body[cut:]
                out.write(COMMENT.format(
                    id=comment_id, author=author, email=email, url=url,
                    ip=f"198.51.100.{comment_id % 250 + 1}", local=(when + timedelta(hours=1)).isoformat(" "),
                    gmt=when.isoformat(" "), body=body, approved=approved, type=kind, parent=parent,
                ))
            out.write("\t</item>\n")
        out.write("</channel>\n</rss>\n")
    return path.stat().st_size


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """This process's CPU time so far (user and system), or that of its children ended so far:
    unlike the clock, load elsewhere does not move it."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(path: Path) -> tuple[int, int, float, float]:
    """(records, problems, seconds, CPU seconds) of one parse."""
    records = problems = 0
    began, cpu = time.perf_counter(), cpu_seconds()
    for item in wordpress.parse(path, Options()):
        if isinstance(item, ImportedComment):
            records += 1
        else:
            problems += 1
    return records, problems, time.perf_counter() - began, cpu_seconds() - cpu


# ---- the full import, in a child process ---------------------------------------------------


def child(mode: str, path: Path, target: str, profile: bool) -> dict[str, Any]:
    """Import (or dry-run) the file into a fresh database (a SQLite file, or a new schema on the
    PostgreSQL server at a postgresql+psycopg:// URL, dropped afterwards); what the parent prints."""
    with _fresh_database(target) as (url, size):
        return _child(mode, path, url, size, profile)


@contextmanager
def _fresh_database(target: str) -> Iterator[tuple[str, Callable[[], int]]]:
    """(URL, its size in bytes) of an empty database: the SQLite file named, or a schema of its own."""
    if not target.startswith("postgresql"):
        database = Path(target)
        yield f"sqlite:///{database}", lambda: database.stat().st_size if database.exists() else 0
        return
    import sqlalchemy as sa
    from probes import postgres_schema

    url, drop = postgres_schema(target, f"import_bench_{os.getpid()}")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def size() -> int:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'").scalar_one())

    try:
        yield url, size
    finally:
        engine.dispose()
        drop()


def _child(mode: str, path: Path, url: str, size: Callable[[], int], profile: bool) -> dict[str, Any]:
    from comments import db as dbmod
    from comments import importing
    from comments.crypto import new_key
    from comments.settings import Settings

    settings = Settings(database_url=url, email_key=new_key(), _env_file=None)
    dbmod.upgrade(settings)
    database_handle = dbmod.Database(settings)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profiler = cProfile.Profile() if profile else None
    try:
        began, cpu, workers_cpu = time.perf_counter(), cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN)
        if profiler is not None:
            profiler.enable()
        report = importing.run(database_handle, "wordpress", path, Options(), dry_run=mode == "dry-run")
        if profiler is not None:
            profiler.disable()
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
        workers_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - workers_cpu  # the pool has ended: its workers too
    finally:
        database_handle.dispose()
    result: dict[str, Any] = {
        "mode": mode, "seconds": seconds, "cpu_seconds": cpu, "workers_cpu_seconds": workers_cpu,
        "read": report.read, "imported": report.imported, "report": report.lines(),
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "baseline_kib": baseline, "database_bytes": size(),
        "backend": "PostgreSQL" if url.startswith("postgresql") else "SQLite",
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(28)
        result["profile"] = text.getvalue()
    return result


def full(path: Path, folder: Path, mode: str, profile: bool = False, postgres: str | None = None) -> dict[str, Any]:
    database = folder / f"bench-{mode}.db"
    for stale in folder.glob(f"bench-{mode}.db*"):
        stale.unlink()
    command = [sys.executable, __file__, "--child", mode, str(path), postgres or str(database)]
    if profile:
        command.append("--profile")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        peak = _PeakMemory(proc.pid)
        peak.start()
        stdout, stderr = proc.communicate()
        peak.done.set()
        peak.join()
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} child failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["tree_peak_pss_kib"] = peak.peak_kib
    return result


class _PeakMemory(threading.Thread):
    """Samples, every 50 ms, the proportional set size (PSS) of a process and all its descendants,
    summed: the memory the whole import uses, pages shared after fork counted once (Linux /proc;
    0 where there is none)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.done = threading.Event()
        self.peak_kib = 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(pid) for pid in _tree(self.pid)))

def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            todo.extend(int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except OSError:
            pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def show_full(result: dict[str, Any]) -> None:
    what = f"import into {result['backend']}" if result["mode"] == "import" else "dry run (parse, check, render; no writes)"
    seconds, cpu, workers_cpu = result["seconds"], result["cpu_seconds"], result["workers_cpu_seconds"]
    print(f"{what}: {result['read']:,} comments read in {seconds:.1f} s = {result['read'] / seconds:,.0f} "
          f"comments/s ({result['imported'] / seconds:,.0f} imported/s); {cpu:.1f} CPU s in that process "
          f"and {workers_cpu:.1f} in its workers = {result['read'] / (cpu + workers_cpu):,.0f} comments per CPU second")
    workers = f"; of a worker process: {result['workers_maxrss_kib'] / 1024:.0f} MiB" if workers_cpu else ""
    print(f"  peak resident size of that process: {result['maxrss_kib'] / 1024:.0f} MiB "
          f"({result['baseline_kib'] / 1024:.0f} MiB before the run){workers}")
    if result.get("tree_peak_pss_kib"):
        print(f"  peak memory of the whole import, every process (sum of PSS, sampled every 50 ms): "
              f"{result['tree_peak_pss_kib'] / 1024:.0f} MiB")
    if result["mode"] == "import":
        print(f"  database size: {result['database_bytes'] / 2**20:.0f} MiB")
    for line in result["report"]:
        print("  | " + line)


def sanitiser_cost(path: Path, sample: int = 1500) -> None:
    """The sanitiser's cost per body, on the first bodies of the file, by path."""
    from comments import sanitize

    bodies = []
    for item in wordpress.parse(path, Options()):
        if isinstance(item, ImportedComment):
            bodies.append(item.body)
            if len(bodies) >= sample:
                break
    fast = [b for b in bodies if sanitize.render_fast(b) is not None]
    inline = [b for b in bodies if sanitize.render_fast(b) is None and sanitize.render_fast_markup(b) is not None]
    slow = [b for b in bodies if sanitize.render_fast(b) is None and sanitize.render_fast_markup(b) is None]
    marked = inline + slow

    def per_body(texts: list[str], function: Any) -> float:
        if not texts:
            return 0.0
        best = []
        for _ in range(3):
            began = time.perf_counter()
            for text in texts:
                function(text)
            best.append((time.perf_counter() - began) / len(texts))
        return min(best)

    def described(name: str, texts: list[str]) -> str:
        return f"{name} {len(texts):,}" + (f" at {per_body(texts, sanitize.render) * 1e6:,.0f} us each" if texts else "")

    print(f"sanitiser, best of 3 over {len(bodies):,} bodies: {described('fast path', fast)}; "
          f"{described('inline fast path', inline)}; {described('bleach path', slow)}")
    if marked:
        print(f"  the bodies with markup through bleach, as without the inline path: "
              f"{per_body(marked, sanitize.render_bleach) * 1e6:,.0f} us each")
    try:
        import nh3
    except ImportError:
        return
    if not marked:
        return
    print(f"  for comparison, nh3.clean on the bodies with markup: {per_body(marked, nh3.clean) * 1e6:,.1f} us each "
          f"(median body {statistics.median(len(b) for b in marked):,.0f} characters)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--html-share", type=float, default=0.25,
                        help="share of bodies with inline HTML, a link and an entity (0 to 1)")
    parser.add_argument("--keep", type=Path, help="write the file (and databases) here and keep them")
    parser.add_argument("--full", action="store_true", help="also import into SQLite, and dry-run, in child processes")
    parser.add_argument("--profile", action="store_true",
                        help="with --full: cProfile the import's reading process (not its workers)")
    parser.add_argument("--postgres", metavar="URL",
                        help="with --full: import into a new schema on this PostgreSQL server (dropped afterwards) "
                             "instead of a SQLite file (postgresql+psycopg://user@host/database)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, file, target = args.child
        print(json.dumps(child(mode, Path(file), target, args.profile)))
        return
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bench.xml"
        began = time.perf_counter()
        size = generate(path, args.comments, html_share=args.html_share)
        print(f"generated {args.comments:,} comments ({args.html_share:.0%} with HTML), {size / 2**20:.1f} MiB, "
              f"in {time.perf_counter() - began:.1f} s")

        records, problems, seconds, cpu = run(path)
        print(f"parse: {records:,} records + {problems:,} problems in {seconds:.2f} s = "
              f"{(records + problems) / seconds:,.0f} comments/s ({size / 2**20 / seconds:.1f} MiB/s); "
              f"{(records + problems) / cpu:,.0f} comments per CPU second")

        tracemalloc.start()
        _, _, traced_seconds, _ = run(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"peak Python allocation (tracemalloc): {peak / 2**20:.1f} MiB (that run: {traced_seconds:.1f} s)")
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak resident size of the process (ru_maxrss): {maxrss / 1024:.1f} MiB "
              f"({baseline / 1024:.1f} MiB after the imports, before any parse)")
        if not args.full:
            return
        sanitiser_cost(path)
        for mode in ("import", "dry-run"):
            result = full(path, folder, mode, profile=args.profile and mode == "import", postgres=args.postgres)
            show_full(result)
            if "profile" in result:
                print(result["profile"])


if __name__ == "__main__":
    main()
