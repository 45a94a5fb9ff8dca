"""Measure the WordPress importer on a generated 100,000-comment WXR file: parse rate and peak memory.

    python bench/import_bench.py                  # 100,000 comments, parser alone
    python bench/import_bench.py --comments 20000 --keep DIR

The file is written to a temporary directory (removed afterwards unless --keep): 50
comments per post, a third of them replies, a mix of statuses, a few pingbacks, bodies
of 100 to 1,500 characters with some inline HTML and non-ASCII text, as WordPress writes
them (CDATA). Two runs are timed: one with tracemalloc off (the rate), one with it on
(Python's peak allocation); ru_maxrss is the process's peak resident size at the end.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def generate(path: Path, comments: int, per_post: int = 50, seed: int = 10) -> int:
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
                body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 220)))
                out.write(COMMENT.format(
                    id=comment_id, author=author, email=email, url=url,
                    ip=f"198.51.100.{comment_id % 250 + 1}", local=(when + timedelta(hours=1)).isoformat(" "),
                    gmt=when.isoformat(" "), body=body, approved=approved, type=kind, parent=parent,
                ))
            out.write("\t</item>\n")
        out.write("</channel>\n</rss>\n")
    return path.stat().st_size


def run(path: Path) -> tuple[int, int, float]:
    """(records, problems, seconds) of one parse."""
    records = problems = 0
    began = time.perf_counter()
    for item in wordpress.parse(path, Options()):
        if isinstance(item, ImportedComment):
            records += 1
        else:
            problems += 1
    return records, problems, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bench.xml"
        began = time.perf_counter()
        size = generate(path, args.comments)
        print(f"generated {args.comments:,} comments, {size / 2**20:.1f} MiB, in {time.perf_counter() - began:.1f} s")

        records, problems, seconds = run(path)
        print(f"parse: {records:,} records + {problems:,} problems in {seconds:.2f} s = "
              f"{(records + problems) / seconds:,.0f} comments/s ({size / 2**20 / seconds:.1f} MiB/s)")

        tracemalloc.start()
        _, _, traced_seconds = run(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"peak Python allocation (tracemalloc): {peak / 2**20:.1f} MiB (that run: {traced_seconds:.1f} s)")
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak resident size of the process (ru_maxrss): {maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
