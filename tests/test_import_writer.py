"""Importing into the store: `comments import wordpress|disqus|isso` end to end, idempotence, parents, bad input."""

from __future__ import annotations

import functools
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from comments import importing, store
from comments.cli import main
from comments.db import Database
from comments.settings import Settings
from comments.store.comments import ensure_page, ensure_pages
from comments.store.imports import ROW_FIELDS, link_parents, origin_key
from conftest import command_line_environment, table_rows

DATA = Path(__file__).resolve().parent / "data"
WXR_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wxr-sample.xml"
DISQUS_SAMPLE = DATA / "disqus-sample.xml"
ISSO_SQL = DATA / "isso-sample.sql"
WXR_SITE = "https://blog.example.com"
FIRST_POST = "/2023/01/russia-casualties/"
SECOND_POST = "/2023/02/winter-notes/"


# ---- the command line in-process, and reading what it wrote ------------------------------


@pytest.fixture(autouse=True)
def environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """For tests with a database: only our COMMENTS_* variables (its URL and the tests' email key),
    no .env file in reach, and logging put back afterwards (the CLI configures it)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    with command_line_environment(monkeypatch, tmp_path, request.getfixturevalue("database_url")):
        yield


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one `comments ...` run; never a traceback."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, ordered by primary key."""
    return table_rows(url)


def counts(url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(url).items()}


@functools.cache
def origin_ids(origin: str, source: str) -> dict[str, str]:
    """origin_key -> origin id, for the small numeric ids the samples and the built files use."""
    return {origin_key(origin, source, str(n)): str(n) for n in range(1, 6000)}


def imported(url: str, origin: str, source: str) -> dict[str, dict[str, Any]]:
    """The imported comments by their id in the other system, each with its page key and its
    parent's origin id (None at the top level)."""
    rows = snapshot(url)
    pages = {page["id"]: page["key"] for page in rows["page"]}
    ids = origin_ids(origin, source)
    found = {ids[row["origin_key"]]: row for row in rows["comment"] if row["origin_key"] in ids}
    origin_of = {row["id"]: origin_id for origin_id, row in found.items()}
    for row in found.values():
        row["page"] = pages[row["page_id"]]
        row["parent"] = origin_of.get(row["parent_id"]) if row["parent_id"] else None
        assert row["parent_id"] is None or row["parent"] is not None
    return found


# ---- files built in the tests -----------------------------------------------------------


WXR_HEAD = """<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0" xmlns:wp="http://wordpress.org/export/1.2/">
<channel>
<wp:wxr_version>1.2</wp:wxr_version>
<wp:base_site_url>https://site.example</wp:base_site_url>
"""


def wp_comment(comment_id: int, parent: int = 0, **fields: str) -> str:
    values = {
        "comment_author": "Ann", "comment_author_email": "ann@example.net", "comment_author_IP": "192.0.2.77",
        "comment_date_gmt": f"2023-01-15 09:{comment_id % 60:02d}:00", "comment_content": f"Comment {comment_id}",
        "comment_approved": "1", "comment_type": "comment",
    }
    values.update(fields)
    inner = "".join(f"<wp:{key}><![CDATA[{value}]]></wp:{key}>\n" for key, value in values.items())
    return (f"<wp:comment>\n<wp:comment_id>{comment_id}</wp:comment_id>\n{inner}"
            f"<wp:comment_parent>{parent}</wp:comment_parent>\n</wp:comment>\n")


def wxr_file(path: Path, *comments: str, link: str = "https://site.example/post/") -> Path:
    path.write_text(WXR_HEAD + f"<item>\n<title>Post</title>\n<link>{link}</link>\n" + "".join(comments)
                    + "</item>\n</channel>\n</rss>\n", encoding="utf-8")
    return path


@pytest.fixture
def wxr_sample() -> Path:
    if not WXR_SAMPLE.is_file():
        pytest.skip("the shared WXR sample (shared/data/wxr-sample.xml beside the project) is absent")
    return WXR_SAMPLE


def isso_db(tmp_path: Path) -> Path:
    path = tmp_path / "isso.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(ISSO_SQL.read_text(encoding="utf-8"))
    return path


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path.name}")


# ---- WordPress: the shared sample, end to end ----------------------------------------------

WXR_REPORT = [
    "imported 9, already present 0, re-parented 0, skipped 1, failed 0 (of 10 comments read)",
    "  skipped: pingback: 1",
]


async def test_wxr_sample_imported_with_statuses_threading_dates_and_privacy(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path, mod: httpx.AsyncClient,
    client: httpx.AsyncClient,
) -> None:
    code, out, err = cli(capsys, "import", "wordpress", wxr_sample)
    assert code == 0, err
    assert out.splitlines() == WXR_REPORT
    # The progress line, with counts, goes to stderr and is rewritten in place.
    assert "\rread 10: imported 9, already present 0, skipped 1, failed 0" in err

    found = imported(database_url, "wordpress", WXR_SITE)
    assert sorted(found) == ["1001", "1002", "1003", "1004", "1005", "1006", "1007", "2001", "2002"]
    assert {i: r["status"] for i, r in found.items()} == {
        "1001": "approved", "1002": "approved", "1003": "approved", "1004": "pending", "1005": "spam",
        "1006": "trash", "1007": "approved", "2001": "approved", "2002": "approved"}
    # Threading as in the file, including 1007, a reply to 1006 which is in the trash.
    assert {i: r["parent"] for i, r in found.items()} == {
        "1001": None, "1002": "1001", "1003": "1002", "1004": None, "1005": None, "1006": "1001",
        "1007": "1006", "2001": None, "2002": "2001"}
    assert {r["page"] for i, r in found.items() if i < "2"} == {FIRST_POST}
    assert {r["page"] for i, r in found.items() if i > "2"} == {SECOND_POST}
    assert all(r["origin_parent_key"] is None for r in found.values())
    # The GMT dates, not the site's local ones (an hour ahead in the file).
    assert found["1001"]["created_at"] == datetime(2023, 1, 15, 9, 12)
    assert found["2002"]["created_at"] == datetime(2023, 2, 3, 8, 0)
    # Emails encrypted at rest, with their lookup hash; addresses anonymised, no user agent kept.
    assert all(r["email"].startswith("e1.") and len(r["email_key"]) == 64 for r in found.values())
    assert (found["1001"]["ip"], found["1002"]["ip"], found["1005"]["ip"]) == ("192.0.2.0", "2001:db8::", "203.0.113.0")
    assert all(r["user_agent"] is None and r["ip_key"] is None for r in found.values())
    # Bodies kept as written, body_html through the sanitiser.
    hostile = found["1003"]
    assert "<script>" in hostile["body"]
    for forbidden in ("<script", "onerror", "javascript:", "onclick", "<img"):
        assert forbidden not in hostile["body_html"]
    assert '<a href="https://example.org/report.pdf" rel="nofollow ugc noopener">' in hostile["body_html"]

    full = (await mod.get(f"/api/admin/comments/{found['1001']['id']}")).json()
    assert (full["email"], full["ip"], full["user_agent"], full["status"], full["page"]) == (
        "ann@example.net", "192.0.2.0", None, "approved", FIRST_POST)
    assert full["created_at"] == "2023-01-15T09:12:00Z"
    zoe = (await mod.get(f"/api/admin/comments/{found['1002']['id']}")).json()
    assert (zoe["author"], zoe["email"]) == ("Zoë Łukasz-Ørsted", "zoe@example.org")

    # The public thread: approved comments only, nested; 1007 under 1001, its nearest approved ancestor.
    thread = (await client.get("/api/comments", params={"page": FIRST_POST})).json()
    ids = {row["id"]: origin_id for origin_id, row in found.items()}

    def shape(items: list[dict[str, Any]]) -> list[Any]:
        return [(ids[item["id"]], shape(item["replies"])) for item in items]

    assert thread["total"] == 4
    assert shape(thread["comments"]) == [("1001", [("1002", [("1003", [])]), ("1007", [])])]
    second = (await client.get("/api/comments", params={"page": SECOND_POST})).json()
    assert shape(second["comments"]) == [("2001", [("2002", [])])]

    audit = snapshot(database_url)["moderation_action"]
    assert [(a["actor"], a["action"], a["to_value"]) for a in audit if a["action"] == "import"] == [
        ("cli", "import", "wordpress: 9 imported, 0 already present; 0 re-parented")]


def test_wxr_sample_second_import_changes_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path
) -> None:
    assert cli(capsys, "import", "wordpress", wxr_sample)[0] == 0
    before = snapshot(database_url)
    code, out, err = cli(capsys, "import", "wordpress", wxr_sample)
    assert code == 0, err
    assert out.splitlines() == [
        "imported 0, already present 9, re-parented 0, skipped 1, failed 0 (of 10 comments read)",
        "  skipped: pingback: 1",
    ]
    after = snapshot(database_url)
    # Every comment and page row is exactly as it was (no ETag moved); the run itself is recorded
    # in the audit log, with what it did.
    assert {t: rows for t, rows in after.items() if t != "moderation_action"} == {
        t: rows for t, rows in before.items() if t != "moderation_action"}
    new = after["moderation_action"][len(before["moderation_action"]):]
    assert after["moderation_action"][:len(before["moderation_action"])] == before["moderation_action"]
    assert [(a["action"], a["to_value"]) for a in new] == [
        ("import", "wordpress: 0 imported, 9 already present; 0 re-parented")]
    # A dry run now says the same, and writes nothing at all.
    code, out, _ = cli(capsys, "import", "wordpress", "--dry-run", wxr_sample)
    assert (code, out.splitlines()[0]) == (
        0, "would import 0, already present 9, re-parented 0, skipped 1, failed 0 (of 10 comments read)")
    assert snapshot(database_url) == after


def test_wxr_sample_dry_run_writes_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path
) -> None:
    code, out, err = cli(capsys, "import", "wordpress", "--dry-run", wxr_sample)
    assert code == 0, err
    assert out.splitlines() == ["would import 9, already present 0, re-parented 0, skipped 1, failed 0 "
                                "(of 10 comments read)", "  skipped: pingback: 1"]
    assert "\rread 10: imported 9" in err
    assert set(counts(database_url).values()) == {0}  # no comment, page or audit row


def test_wxr_sample_with_pings_and_guid_pages(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path
) -> None:
    code, out, _ = cli(capsys, "import", "wordpress", "--include-pings", "--page-from", "guid", wxr_sample)
    assert (code, out.splitlines()) == (
        0, ["imported 10, already present 0, re-parented 0, skipped 0, failed 0 (of 10 comments read)"])
    found = imported(database_url, "wordpress", WXR_SITE)
    assert (found["1001"]["page"], found["2003"]["page"]) == (
        "https://blog.example.com/?p=101", "https://blog.example.com/?p=205")
    assert found["2003"]["email"] == ""  # a pingback has no address: nothing to encrypt


def test_full_addresses_and_user_agents_are_kept_while_the_retention_allows(
    database_url: str, db: Database, tmp_path: Path, settings: Settings
) -> None:
    agent = "Mozilla/5.0 (X11; Linux x86_64)"
    path = wxr_file(tmp_path / "a.xml", wp_comment(1, comment_agent=agent))
    keeping = Database(settings.model_copy(update={"ip_retention_days": 30}))
    try:
        assert importing.run(keeping, "wordpress", path).imported == 1
    finally:
        keeping.dispose()
    row = imported(database_url, "wordpress", "https://site.example")["1"]
    assert (row["ip"], row["user_agent"]) == ("192.0.2.77", agent)
    assert row["personal_until"] == row["created_at"] + timedelta(days=30)
    # With the default (0 days), the same comment would have been stored anonymised, without an agent.
    other = wxr_file(tmp_path / "b.xml", wp_comment(2, comment_agent=agent))
    assert importing.run(db, "wordpress", other).imported == 1
    row = imported(database_url, "wordpress", "https://site.example")["2"]
    assert (row["ip"], row["user_agent"], row["personal_until"]) == ("192.0.2.0", None, None)


# ---- parents ---------------------------------------------------------------------------


def test_forward_parents_are_linked_and_missing_ones_made_top_level(
    database_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "BATCH", 2)  # the forward parent lands in a later batch
    path = wxr_file(
        tmp_path / "a.xml",
        wp_comment(1, parent=4),  # its parent comes three comments later
        wp_comment(2), wp_comment(3, parent=999),  # 999 is not in the file
        wp_comment(4, parent=2), wp_comment(5, parent=1),
    )
    report = importing.run(db, "wordpress", path)
    assert (report.imported, report.reparented, report.problems) == (5, 1, 0)
    assert report.lines()[0] == (
        "imported 5, already present 0, re-parented 1, skipped 0, failed 0 (of 5 comments read)")
    found = imported(database_url, "wordpress", "https://site.example")
    assert {i: r["parent"] for i, r in found.items()} == {"1": "4", "2": None, "3": None, "4": "2", "5": "1"}
    # The orphan keeps its parent's origin, so a later import that brings 999 links it.
    assert [i for i, r in found.items() if r["origin_parent_key"] is not None] == ["3"]


def test_a_later_import_links_to_earlier_parents_and_orphans_to_late_ones(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    first = wxr_file(tmp_path / "a.xml", wp_comment(1), wp_comment(3, parent=999))
    assert importing.run(db, "wordpress", first).reparented == 1
    # A second file of the same site brings the missing 999 and a reply to 1 (imported before).
    second = wxr_file(tmp_path / "b.xml", wp_comment(999), wp_comment(4, parent=1), wp_comment(3, parent=999))
    report = importing.run(db, "wordpress", second)
    assert (report.imported, report.present, report.reparented) == (2, 1, 0)
    found = imported(database_url, "wordpress", "https://site.example")
    assert found["4"]["parent"] == "1"
    # 3 waited at the top level with its parent's origin; now that 999 has arrived, it is linked.
    assert (found["3"]["parent"], found["999"]["parent"]) == ("999", None)


def test_a_parent_on_another_page_is_no_parent(database_url: str, db: Database, tmp_path: Path) -> None:
    path = tmp_path / "pages.xml"
    path.write_text(
        WXR_HEAD + "<item><link>https://site.example/a/</link>\n" + wp_comment(1) + "</item>\n"
        + "<item><link>https://site.example/b/</link>\n" + wp_comment(2, parent=1) + wp_comment(3, parent=2)
        + "</item>\n</channel>\n</rss>\n", encoding="utf-8")
    report = importing.run(db, "wordpress", path)
    assert (report.imported, report.reparented) == (3, 1)
    found = imported(database_url, "wordpress", "https://site.example")
    assert {i: (r["page"], r["parent"]) for i, r in found.items()} == {
        "1": ("/a/", None), "2": ("/b/", None), "3": ("/b/", "2")}


def test_a_comment_naming_itself_as_parent_is_top_level(database_url: str, db: Database, tmp_path: Path) -> None:
    report = importing.run(db, "wordpress", wxr_file(tmp_path / "a.xml", wp_comment(1, parent=1)))
    assert (report.imported, report.reparented) == (1, 0)
    assert report.warnings == {"comment is its own parent: made top level": 1}
    assert imported(database_url, "wordpress", "https://site.example")["1"]["parent"] is None


# ---- the work in worker processes --------------------------------------------------------------


BODIES = [
    "plain words, a line\nand another\n\nand a paragraph",
    'see <a href="https://source.example/r">the report</a> &amp; <em>table 3</em> &#8230;',  # the inline fast path
    "<blockquote>quoted</blockquote> and www.example.com <img src=x onerror=alert(1)>",  # bleach
    "fish & chips -> <b>yes</b>",
]


def mixed_file(path: Path) -> Path:
    """Four posts of nine comments: bodies for each path of the sanitiser, addresses of each
    kind, replies to earlier comments, to a later one, and to one on another post."""
    items, number = [], 0
    for post in range(4):
        comments = []
        for position in range(9):
            number += 1
            parent = {2: number - 1, 4: number + 1, 5: number - 3, 7: max(1, number - 12)}.get(position, 0)
            comments.append(wp_comment(
                number, parent=parent, comment_content=BODIES[number % 4],
                comment_author_IP=["192.0.2.77", "2001:db8::5", "", "not-an-address"][number % 4],
                comment_author_email=f"reader{number % 5}@example.net" if number % 6 else "",
                comment_author_url="https://reader.example/" if number % 2 else "",
                comment_approved=["1", "0", "spam", "1"][number % 4]))
        items.append(f"<item>\n<link>https://site.example/p{post}/</link>\n" + "".join(comments) + "</item>\n")
    path.write_text(WXR_HEAD + "".join(items) + "</channel>\n</rss>\n", encoding="utf-8")
    return path


def readable(url: str, db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row, ids included, with addresses decrypted and without the times of the run."""
    rows = snapshot(url)
    for row in rows["comment"]:
        row["email"] = db.keyring().decrypt(row["email"])
        del row["updated_at"]
    for table in ("page", "moderation_action"):
        for row in rows[table]:
            del row["created_at"]
    return rows


def empty(url: str) -> None:
    """Remove every row, and start the ids again from 1 (as a fresh test database does)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
                conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            else:
                for table in reversed(SQLModel.metadata.sorted_tables):
                    conn.execute(table.delete())
    finally:
        engine.dispose()


def test_rows_made_in_worker_processes_are_the_rows_made_here(
    database_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mixed_file(tmp_path / "mixed.xml")
    monkeypatch.setattr(importing, "BATCH", 5)  # eight batches, several in flight at once
    pools: list[int] = []

    class Pool(importing.ProcessPoolExecutor):
        def __init__(self, workers: int, **kwargs: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(importing, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(importing.os, "cpu_count", lambda: 2)
    in_workers = importing.run(db, "wordpress", path)
    rows_in_workers = readable(database_url, db)
    empty(database_url)
    monkeypatch.setattr(importing.os, "cpu_count", lambda: 1)
    here = importing.run(db, "wordpress", path)
    assert pools == [2]  # the first run used two worker processes, the second none
    assert in_workers.lines() == here.lines()
    assert in_workers.lines()[0] == (
        "imported 36, already present 0, re-parented 3, skipped 0, failed 0 (of 36 comments read)")
    # The same rows with the same ids: written in file order, however many processes made them.
    assert rows_in_workers == readable(database_url, db)
    found = imported(database_url, "wordpress", "https://site.example")
    assert {i: found[i]["parent"] for i in ("3", "5", "6", "8", "17")} == {
        "3": "2", "5": "6", "6": "3", "8": "1", "17": None}  # 5's parent came after it; 17's is on another post
    assert {r["body_html"] for r in found.values()} >= {
        f'<p>see <a href="https://source.example/r" rel="nofollow ugc noopener">the report</a> &amp; '
        "<em>table 3</em> &#8230;</p>"}
    monkeypatch.setattr(importing.os, "cpu_count", lambda: 16)
    again = importing.run(db, "wordpress", path)
    assert pools == [2, 2]  # sixteen cores, still two workers (the memory bound)
    assert again.lines()[0].startswith("imported 0, already present 36,")


def test_the_email_keys_reach_the_workers_by_fork_only(db: Database) -> None:
    # What makes the rows holds the keys and cannot be pickled: it cannot travel through the
    # pool's pipes (or into a log) by mistake. The workers inherit it (the test above).
    with pytest.raises(TypeError):
        pickle.dumps(store.imports.row_maker(db, store.utcnow()))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stage", ["writing", "rendering"])
def test_a_failed_batch_stops_the_ones_after_it(
    database_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, stage: str
) -> None:
    monkeypatch.setattr(importing, "BATCH", 2)
    monkeypatch.setattr(importing.os, "cpu_count", lambda: workers)
    path = wxr_file(tmp_path / "a.xml", *(wp_comment(n, comment_content=f"Comment {n}") for n in range(1, 9)))
    if stage == "writing":
        write = store.imports.Writer.write
        third = origin_key("wordpress", "https://site.example", "3")

        def failing_write(self: Any, batch: list[Any]) -> tuple[int, int]:
            if any(row[ROW_FIELDS.index("origin_key")] == third for _, row in batch):
                raise RuntimeError("the disk is full")
            return write(self, batch)

        monkeypatch.setattr(store.imports.Writer, "write", failing_write)
    else:
        render = importing.sanitize.render

        def failing_render(body: str) -> str:
            if body == "Comment 3":
                raise RuntimeError("the disk is full")
            return render(body)

        monkeypatch.setattr(importing.sanitize, "render", failing_render)
    # Batches: 1-2, 3-4 (fails), 5-6, 7-8. The first is written, as it would be in one process;
    # none after the failure is.
    with pytest.raises(RuntimeError, match="the disk is full"):
        importing.run(db, "wordpress", path)
    assert sorted(imported(database_url, "wordpress", "https://site.example")) == ["1", "2"]


def test_the_importing_connection_keeps_its_larger_cache_to_itself(
    database_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_sqlite:
        pytest.skip("a SQLite page cache")
    monkeypatch.setattr(importing.os, "cpu_count", lambda: 1)  # the writes in this process, on its pool
    with db.engine.connect() as conn:
        default = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    assert importing.run(db, "wordpress", wxr_file(tmp_path / "a.xml", wp_comment(1))).imported == 1
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == default


def test_linking_parents_visits_only_the_waiting_rows(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's query plan")
    # Without statistics, SQLite read the whole table for every batch (a slower import for each
    # comment already stored); the waiting rows are found through their index instead.
    update = []
    with db.engine.connect() as conn:

        @sa.event.listens_for(conn, "before_cursor_execute", retval=True)
        def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> Any:
            if statement.startswith("UPDATE comment"):
                update.extend(cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall())
            return statement, parameters

        with conn.begin():
            link_parents(conn)
    details = [row[-1] for row in update]
    assert details and not [d for d in details if d.startswith("SCAN")], details


def test_pages_made_together_are_made_as_one_by_one(database_url: str, db: Database) -> None:
    now = store.utcnow()
    with db.write() as conn:
        first = ensure_page(conn, "/a/", now).id
        ids = ensure_pages(conn, ["/b/", "/a/", "/" + "c" * 1000], now)
        assert ids["/a/"] == first and ids == ensure_pages(conn, list(ids), now)
        assert ids["/b/"] < ids["/" + "c" * 1000]  # made in the order given
        alone = ensure_page(conn, "/d/", now)
    rows = {row["key"]: row for row in snapshot(database_url)["page"]}
    assert set(rows) == {"/a/", "/b/", "/" + "c" * 1000, "/d/"}
    assert {k: (r["id"], r["closed"], r["thread_version"], r["created_at"]) for k, r in rows.items()} == {
        **{key: (page_id, False, 0, now) for key, page_id in ids.items()}, "/d/": (alone.id, False, 0, now)}
    assert rows["/b/"]["key_hash"] == store.comments.page_key_hash("/b/")


# ---- Disqus and Isso samples ------------------------------------------------------------------


def test_disqus_sample_end_to_end(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    code, out, err = cli(capsys, "import", "disqus", DISQUS_SAMPLE)
    assert code == 0, err
    invalid, lost = (line_of(DISQUS_SAMPLE, f'<post dsq:id="{n}">') for n in (5008, 5010))
    assert out.splitlines() == [
        "imported 7, already present 0, re-parented 0, skipped 2, failed 2 (of 11 comments read)",
        "  skipped: deleted in Disqus, no text: 1",
        "  skipped: duplicate id N (an earlier comment has it): 1",
        f"  failed at line {invalid}: invalid email",
        f"  failed at line {lost}: unknown thread 7999",
    ]
    found = imported(database_url, "disqus", "fieldnotes")
    assert sorted(found, key=int) == ["5001", "5002", "5003", "5004", "5005", "5007", "5009"]
    assert {i: r["parent"] for i, r in found.items()} == {
        "5001": None, "5002": "5003", "5003": "5001", "5004": None, "5005": "5001", "5007": None, "5009": None}
    assert {i: r["status"] for i, r in found.items() if r["status"] != "approved"} == {"5004": "spam", "5005": "trash"}
    assert {i: r["page"] for i, r in found.items() if not r["page"].startswith("/2023/01/")} == {
        "5007": "/?p=205", "5009": "/2023/03/spring/"}
    assert found["5003"]["author"] == "bob_obrien"
    # Disqus writes HTML paragraphs: they become ours, not nested or escaped ones.
    assert found["5001"]["body_html"] == (
        "<p>Thanks for pulling the numbers together.</p>\n<p>Which sources did you use?</p>")
    assert 'rel="nofollow ugc noopener"' in found["5003"]["body_html"]
    assert found["5007"]["email"] == ""  # anonymous in Disqus: no address
    assert all(r["email"].startswith("e1.") for i, r in found.items() if i != "5007")
    assert found["5001"]["created_at"] == datetime(2023, 1, 15, 9, 12)
    assert found["5002"]["ip"] == "2001:db8::"

    code, out, _ = cli(capsys, "import", "disqus", DISQUS_SAMPLE)
    assert (code, out.splitlines()[0]) == (
        0, "imported 0, already present 7, re-parented 0, skipped 2, failed 2 (of 11 comments read)")


def test_isso_sample_end_to_end(capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path) -> None:
    source = isso_db(tmp_path)
    code, out, err = cli(capsys, "import", "isso", source)
    assert code == 0, err
    assert out.splitlines() == [
        "imported 7, already present 0, re-parented 1, skipped 1, failed 2 (of 10 comments read)",
        "  skipped: deleted in Isso, no text: 1",
        "  warning: website dropped: only http and https addresses are accepted: 1",
        "  failed at row 8: its thread is missing from the threads table",
        "  failed at row 9: invalid email",
    ]
    found = imported(database_url, "isso", "5e55103c0ffee5e55103c0ffee5e5510")
    assert sorted(found, key=int) == ["1", "2", "3", "5", "6", "7", "10"]
    # 5 answered 4, which was deleted without text in Isso and is not imported: top level, counted.
    assert {i: r["parent"] for i, r in found.items()} == {
        "1": None, "2": "1", "3": None, "5": None, "6": None, "7": None, "10": "7"}
    assert {i: r["status"] for i, r in found.items() if r["status"] != "approved"} == {"3": "pending", "6": "trash"}
    assert found["1"]["created_at"] == datetime(2023, 1, 15, 9, 12, 0, 500000)
    # Isso stores Markdown: its inline markup becomes HTML, through the same sanitiser.
    assert found["1"]["body_html"] == (
        "<p>Thanks for pulling the numbers together.</p>\n<p>Which <strong>sources</strong> did you use?</p>")
    assert found["1"]["body"].endswith("Which **sources** did you use?")
    assert found["3"]["body_html"] == "<p>Your formula is off by one: <code>a[b[0]] &gt; 1</code></p>"
    assert found["7"]["body_html"] == "<p>Is there a printable version?<br>\nAsking for my reading group.</p>"
    assert (found["1"]["url"], found["10"]["url"]) == ("https://ann.example.net", None)
    assert found["2"]["author"] == "Anonymous" and found["2"]["email"] == ""
    assert {found[i]["page"] for i in ("7", "10")} == {SECOND_POST}
    assert snapshot(database_url)["moderation_action"][-1]["to_value"] == (
        "isso: 7 imported, 0 already present; 1 re-parented")
    # The Isso database was opened read-only: untouched.
    with sqlite3.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM comments").fetchone() == (10,)

    before = snapshot(database_url)
    code, out, _ = cli(capsys, "import", "isso", source)
    assert out.splitlines()[0] == (
        "imported 0, already present 7, re-parented 0, skipped 1, failed 2 (of 10 comments read)")
    after = snapshot(database_url)
    assert after["comment"] == before["comment"] and after["page"] == before["page"]


# ---- bad input through the command line --------------------------------------------------------


def truncated_sample(tmp_path: Path, wxr_sample: Path) -> Path:
    """The shared sample cut off in the middle of comment 1005 (1001-1004 are complete before it)."""
    text = wxr_sample.read_text(encoding="utf-8")
    cut = text.index("<wp:comment_id>1005<") + 200
    path = tmp_path / "truncated.xml"
    path.write_text(text[:cut], encoding="utf-8")
    return path


def test_a_truncated_file_keeps_what_came_before_the_break(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path, tmp_path: Path
) -> None:
    path = truncated_sample(tmp_path, wxr_sample)
    code, out, err = cli(capsys, "import", "wordpress", path)
    assert code == 1
    last = out.splitlines()[-1]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert last.startswith(f"stopped at line {lines}: the file ends too early (truncated?)"), last
    assert out.splitlines()[0] == (
        "imported 4, already present 0, re-parented 0, skipped 0, failed 0 (of 4 comments read)")
    assert sorted(imported(database_url, "wordpress", WXR_SITE)) == ["1001", "1002", "1003", "1004"]
    # Importing the whole file afterwards adds the rest.
    code, out, _ = cli(capsys, "import", "wordpress", wxr_sample)
    assert (code, out.splitlines()[0]) == (
        0, "imported 5, already present 4, re-parented 0, skipped 1, failed 0 (of 10 comments read)")


def test_a_truncated_file_with_strict_writes_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path, tmp_path: Path
) -> None:
    code, out, err = cli(capsys, "import", "wordpress", "--strict", truncated_sample(tmp_path, wxr_sample))
    assert code == 1
    assert "stopped at line" in out and "the file ends too early" in out
    assert set(counts(database_url).values()) == {0}


def test_malformed_xml_in_the_middle_keeps_what_came_before(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path, tmp_path: Path
) -> None:
    text = wxr_sample.read_text(encoding="utf-8")
    path = tmp_path / "broken.xml"
    path.write_text(text.replace("<wp:comment_id>1005</wp:comment_id>", "<wp:comment_id>1005</wp:comment>"),
                    encoding="utf-8")
    code, out, _ = cli(capsys, "import", "wordpress", path)
    assert code == 1
    assert out.splitlines()[-1].startswith(f"stopped at line {line_of(path, '>1005<')}: malformed XML")
    assert sorted(imported(database_url, "wordpress", WXR_SITE)) == ["1001", "1002", "1003", "1004"]


BOMB = """<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file://{path}">]>
"""


@pytest.mark.parametrize("kind", ["bomb", "external entity", "external DTD"])
def test_hostile_xml_is_refused_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, kind: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    head = {"bomb": BOMB, "external entity": EXTERNAL.format(path=secret),
            "external DTD": f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "file://{secret}">\n'}[kind]
    body = wxr_file(tmp_path / "plain.xml", wp_comment(1, comment_content="&lol4; &secret;")).read_text()
    path = tmp_path / "hostile.xml"
    path.write_text(head + body.split("\n", 1)[1], encoding="utf-8")
    code, out, err = cli(capsys, "import", "wordpress", path)
    assert code == 1
    assert out.splitlines()[-1].startswith("stopped at line 2: refused: the file declares a document type")
    assert "TOP-SECRET" not in out + err
    assert set(counts(database_url).values()) == {0}


@pytest.mark.parametrize(("origin", "message"), [
    ("wordpress", "stopped at line 12: this is not a WordPress export (WXR): the root element is <disqus>, not <rss>"),
    ("isso", "stopped: this is not an Isso database: not an SQLite database (file is not a database)"),
])
def test_a_file_of_another_format_gets_a_clear_message(
    capsys: pytest.CaptureFixture[str], database_url: str, origin: str, message: str
) -> None:
    code, out, err = cli(capsys, "import", origin, DISQUS_SAMPLE)
    assert code == 1
    assert out.splitlines()[-1] == message
    assert set(counts(database_url).values()) == {0}


def test_a_wxr_file_given_as_disqus_gets_a_clear_message(
    capsys: pytest.CaptureFixture[str], database_url: str, wxr_sample: Path
) -> None:
    code, out, _ = cli(capsys, "import", "disqus", wxr_sample)
    assert code == 1
    assert out.splitlines()[-1].startswith("stopped at line ")
    assert "this is not a Disqus export: the root element is <rss>, not <disqus>" in out


@pytest.mark.parametrize(("origin", "message"), [
    ("wordpress", "stopped: cannot read the file: No such file or directory"),
    ("disqus", "stopped: cannot read the file: No such file or directory"),
    ("isso", "stopped: cannot read the file: no such file"),
])
def test_a_missing_file_gets_a_clear_message(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, origin: str, message: str
) -> None:
    code, out, _ = cli(capsys, "import", origin, tmp_path / "nowhere.xml")
    assert code == 1
    assert out.splitlines()[-1] == message
    assert set(counts(database_url).values()) == {0}


def bad_comments_file(tmp_path: Path) -> Path:
    return wxr_file(
        tmp_path / "bad.xml",
        wp_comment(1),
        wp_comment(2, comment_author_email="not-an-address"),
        wp_comment(3, comment_content="x" * 250),
        wp_comment(4, comment_date_gmt="", comment_date=""),
        wp_comment(5, comment_date_gmt="15/01/2023 09:12"),
        wp_comment(6, comment_author="A" * 300),
        wp_comment(1, comment_content="a duplicate id"),
        wp_comment(7, comment_date_gmt="Sun, 15 Jan 2023 04:12:00 -0500"),  # an odd but readable date
    )


def test_bad_comments_are_reported_with_their_lines_and_the_rest_imported(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMENTS_MAX_BODY_CHARS", "200")
    path = bad_comments_file(tmp_path)
    code, out, err = cli(capsys, "import", "wordpress", path)
    assert code == 0, err
    starts = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line == "<wp:comment>"]
    assert out.splitlines() == [
        "imported 2, already present 0, re-parented 0, skipped 1, failed 5 (of 8 comments read)",
        "  skipped: duplicate id N (an earlier comment has it): 1",
        f"  failed at line {starts[1]}: invalid email",
        f"  failed at line {starts[2]}: body longer than 200 characters",
        f"  failed at line {starts[3]}: missing date",
        f"  failed at line {starts[4]}: unreadable date '15/01/2023 09:12'",
        f"  failed at line {starts[5]}: author longer than 245 characters",
    ]
    found = imported(database_url, "wordpress", "https://site.example")
    assert sorted(found) == ["1", "7"]
    assert found["1"]["body"] == "Comment 1"
    assert found["7"]["created_at"] == datetime(2023, 1, 15, 9, 12)


def test_bad_comments_with_strict_stop_the_run_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMENTS_MAX_BODY_CHARS", "200")
    code, out, _ = cli(capsys, "import", "wordpress", "--strict", bad_comments_file(tmp_path))
    assert code == 1
    assert out.splitlines()[0].startswith("would import 2, already present 0, re-parented 0, skipped 1, failed 5")
    assert out.splitlines()[-1] == "stopped: strict: the file has problems; nothing was written"
    assert set(counts(database_url).values()) == {0}


def test_allowed_invalid_emails_and_long_bodies_are_imported_as_given(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    db: Database,
) -> None:
    monkeypatch.setenv("COMMENTS_MAX_BODY_CHARS", "200")
    path = wxr_file(tmp_path / "a.xml", wp_comment(2, comment_author_email="not-an-address"),
                    wp_comment(3, comment_content="x" * 250))
    code, out, _ = cli(capsys, "import", "wordpress", "--allow-invalid-emails", "--allow-long-bodies", path)
    assert (code, out.splitlines()) == (0, [
        "imported 2, already present 0, re-parented 0, skipped 0, failed 0 (of 2 comments read)",
        "  warning: invalid email kept as given: 1",
    ])
    found = imported(database_url, "wordpress", "https://site.example")
    assert found["2"]["email"].startswith("e1.")
    assert db.keyring().decrypt(found["2"]["email"]) == "not-an-address"
    assert found["3"]["body"] == "x" * 250


def test_strict_passes_a_clean_file(capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path) -> None:
    path = wxr_file(tmp_path / "a.xml", wp_comment(1), wp_comment(2, parent=1))
    code, out, _ = cli(capsys, "import", "wordpress", "--strict", path)
    assert (code, out.splitlines()) == (
        0, ["imported 2, already present 0, re-parented 0, skipped 0, failed 0 (of 2 comments read)"])


def test_an_empty_or_binary_file_is_not_a_wxr_file(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    for name, content in (("empty.xml", b""), ("binary.xml", bytes(range(256)) * 4)):
        path = tmp_path / name
        path.write_bytes(content)
        code, out, _ = cli(capsys, "import", "wordpress", path)
        assert code == 1
        assert "this is not a WordPress export (WXR): not an XML file" in out.splitlines()[-1]
    assert set(counts(database_url).values()) == {0}


# ---- the benchmark runs ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_import_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "import_bench.py"
    done = subprocess.run([sys.executable, str(bench), "--comments", "300", "--full", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "generated 300 comments (25% with HTML)" in out
    assert "import into SQLite: 300 comments read in " in out and "comments per CPU second" in out
    assert "dry run (parse, check, render; no writes): 300 comments read in " in out
    assert "peak resident size of that process: " in out
    imported_line = next(line for line in out.splitlines() if line.startswith("  | imported "))
    assert imported_line.endswith("failed 0 (of 300 comments read)")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("COMMENTS_TEST_DATABASE_URL"), reason="needs COMMENTS_TEST_DATABASE_URL (PostgreSQL)")
def test_the_import_benchmark_runs_on_postgresql_and_drops_its_schema(tmp_path: Path) -> None:
    url = os.environ["COMMENTS_TEST_DATABASE_URL"]
    bench = Path(__file__).resolve().parent.parent / "bench" / "import_bench.py"
    done = subprocess.run([sys.executable, str(bench), "--comments", "200", "--full", "--postgres", url,
                           "--keep", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "import into PostgreSQL: 200 comments read in " in out
    imported_line = next(line for line in out.splitlines() if line.startswith("  | imported "))
    assert imported_line.endswith("failed 0 (of 200 comments read)")
    size = next(line for line in out.splitlines() if line.startswith("  database size: "))
    assert int(size.split()[2]) >= 0
    assert not list(tmp_path.glob("bench-import.db*"))  # nothing written to SQLite
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'import_bench_')").scalar_one()
    finally:
        engine.dispose()
    assert left == 0
