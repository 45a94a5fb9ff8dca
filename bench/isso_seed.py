"""Seed Isso's database with the benchmark's workload; runs inside Isso's own virtual environment.

    bench/.peers/isso-venv/bin/python bench/isso_seed.py ISSO_CONFIG SIZE [PAGES BIG_THREAD]

Isso creates its tables itself (through its own database class); the rows are then written
with the standard library's sqlite3: the same read set (200 pages of 30 published comments,
a third of them replies), the same 2,000-comment thread and the same filler as bench/seed.py,
with bodies from the same generator. Isso keeps the text as written and renders it on read.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bodies import author_name, make_body, website  # noqa: E402

PAGES = 200
PER_THREAD = 30
BIG_THREAD = 2000
FILLER_PER_PAGE = 40
BIG_PAGE = "/2024/12/the-long-thread/"
PUBLISHED, PENDING, DELETED = 1, 2, 4


def page_key(i: int) -> str:
    return f"/2024/{i % 12 + 1:02d}/article-{i:03d}/"


def main(config_path: str, size: int, pages: int = PAGES, big_thread: int = BIG_THREAD) -> int:
    from isso import config
    from isso.db import SQLite3
    from isso.utils import Bloomfilter

    conf = config.load(config.default_file(), config_path)
    path = conf.get("general", "dbpath")
    SQLite3(path, conf)  # Isso's own schema
    rng = random.Random(7)
    pool = [make_body(rng).text for _ in range(2000)]
    now = time.time()
    threads: list[tuple[int, str, str]] = []
    comments: list[tuple[object, ...]] = []
    next_id = 1

    def thread(uri: str, count: int, start: float, span: float, statuses: list[int] | None, unique: bool) -> None:
        nonlocal next_id
        tid = len(threads) + 1
        threads.append((tid, uri, "Article"))
        published: list[int] = []
        for i in range(count):
            mode = statuses[i % len(statuses)] if statuses else PUBLISHED
            parent = rng.choice(published) if published and rng.random() < 0.33 else None
            ip = f"198.18.{rng.randrange(256)}.0"
            text = make_body(rng).text if unique else rng.choice(pool)
            comments.append((tid, next_id, parent, start + span * i / count, None, mode, ip, text,
                             author_name(rng), f"reader{next_id}@mail.example", website(rng),
                             memoryview(Bloomfilter(iterable=[ip]).array), 0))
            if mode == PUBLISHED:
                published.append(next_id)
            next_id += 1

    filler = max(0, size - pages * PER_THREAD - big_thread)
    mix = [PUBLISHED] * 7 + [PENDING] * 2 + [DELETED]
    for i in range(-(-filler // FILLER_PER_PAGE)):
        count = min(FILLER_PER_PAGE, filler - i * FILLER_PER_PAGE)
        thread(f"/archive/{i:06d}/", count, now - 400 * 86400 + i * 30, 3 * 86400, mix, False)
    thread(BIG_PAGE, big_thread, now - 40 * 86400, 9 * 86400, None, False)
    for i in range(pages):
        thread(page_key(i), PER_THREAD, now - 30 * 86400 + i * 60, 20 * 86400, None, True)

    with sqlite3.connect(path) as con:
        con.executemany("INSERT INTO threads (id, uri, title) VALUES (?, ?, ?)", threads)
        con.executemany(
            "INSERT INTO comments (tid, id, parent, created, modified, mode, remote_addr, text, author, email, "
            "website, voters, notification) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", comments)
    print(f"seeded {len(comments)} comments on {len(threads)} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], *(int(a) for a in sys.argv[2:5])))
