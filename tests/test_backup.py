"""Moving out: `comments export` (JSON Lines backup, WordPress WXR) and `comments import backup`, end to end."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import orjson
import pytest
import sqlalchemy as sa

from comments import backup, store
from comments.app import create_app
from comments.cli import main
from comments.crypto import new_key
from comments.db import Database, head_revision
from comments.models import CommentIn
from comments.store.imports import origin_key
from conftest import (PG_URL, TEST_EMAIL_KEY, Clients, approve, base_settings, command_line_environment, post,
                      table_rows)

WXR_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wxr-sample.xml"
pytestmark = pytest.mark.skipif(not WXR_SAMPLE.is_file(), reason="the shared WXR sample is not beside the checkout")
SITE = "https://news.example"
#: Never in a backup: the service's own secret, moderator tokens, and short-lived working state.
EXCLUDED = {"secret", "moderator_token", "lease", "rate_event", "webhook"}
#: The notification tables of migration 0004 are in every backup, by design.
OUTBOX_TABLES = {"outbox", "notice_subscription", "reply_watch", "mail_link_use"}


# ---- the command line in-process ---------------------------------------------------------


@pytest.fixture(autouse=True)
def environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """For tests with a database: only our COMMENTS_* variables, no .env file in reach, and
    logging put back afterwards (the CLI configures it)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    with command_line_environment(monkeypatch, tmp_path, request.getfixturevalue("database_url")):
        yield


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, *argv: str | Path,
        key: str = TEST_EMAIL_KEY) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `comments ...` on the database at url; never a traceback."""
    monkeypatch.setenv("COMMENTS_DATABASE_URL", url)
    monkeypatch.setenv("COMMENTS_EMAIL_KEY", key)
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def snapshot(url: str, names: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a backup holds (or of those named), ordered by primary key."""
    return table_rows(url, names, frozenset(EXCLUDED))


def row_count(url: str) -> int:
    return sum(len(rows) for rows in snapshot(url).values())


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same kind (not migrated: the command migrates it)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    yield from pg_schema(f"cmt_restore_{os.getpid()}")


def pg_schema(schema: str) -> Iterator[str]:
    assert PG_URL
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


# ---- a site with a bit of everything, made through the API ---------------------------------


async def populate(clients: Clients, mod: httpx.AsyncClient, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch, url: str) -> dict[str, int]:
    """Comments in every status, replies, a deleted and an edited one, changed rules, a closed
    page, a webhook and its outbox, a reply-notice subscription, the spam model trained by a
    verdict, and the shared WXR sample imported (origin keys); returns the ids by name."""
    hook = await mod.post("/api/admin/webhooks", json={"url": "https://hooks.example/in",
                                                      "events": ["comment.created", "comment.approved"]})
    assert hook.status_code == 201, hook.text
    rules = (await mod.get("/api/admin/rules")).json()
    rules.update(blocked_words=["viagra"], moderation_words=["casino"], max_links=3, flood_seconds=5)
    assert (await mod.put("/api/admin/rules", json=rules)).status_code == 200

    ids: dict[str, int] = {}

    async def new(name: str, **fields: Any) -> dict[str, Any]:
        response = await post(clients, **fields)
        assert response.status_code in (201, 202), response.text
        ids[name] = response.json()["id"]
        return dict(response.json())

    await new("first", body="First! See https://example.org/a and <b>bold</b> & <i>more</i>.\n\nSecond paragraph.",
              author="Ann Ø", url="ann.example", notify="1")
    await approve(mod, ids["first"])
    await new("reply", parent=ids["first"], body="A reply with ]]> in it, and <script>x</script>.", author="Bob")
    await approve(mod, ids["reply"])
    await new("spam", body="cheap viagra here", author="Spammer")
    await new("trash", body="Off topic.", author="Troll")
    patched = await mod.patch(f"/api/admin/comments/{ids['trash']}", json={"status": "trash"})
    assert patched.status_code == 200
    await new("pending", body="Waiting in the queue.", author="Quiet")
    await new("verdict", body="buy followers now, best prices, click", author="Seller")
    assert (await mod.patch(f"/api/admin/comments/{ids['verdict']}", json={"status": "spam"})).status_code == 200
    gone = await new("gone", page="/p/2", body="To be deleted.", author="Gone")
    await approve(mod, ids["gone"])
    await new("orphan", page="/p/2", parent=ids["gone"], body="Reply to a deleted one.", author="Left")
    await approve(mod, ids["orphan"])
    assert (await mod.delete(f"/api/admin/comments/{gone['id']}")).status_code == 204
    ids.pop("gone")
    edited = await new("edited", page="/p/2", body="Before the edit.", author="Eddie")
    author_edit = await clients.client().patch(f"/api/comments/{edited['id']}", json={"body": "Edited by its author."},
                                               headers={"X-Edit-Token": edited["edit_token"]})
    assert author_edit.status_code == 200, author_edit.text
    assert (await mod.patch(f"/api/admin/comments/{ids['edited']}",
                            json={"status": "approved", "body": "Edited by a moderator."})).status_code == 200
    closed = await mod.patch("/api/admin/pages", params={"page": "/p/2"}, json={"closed": True})
    assert closed.status_code == 200, closed.text
    code, _, err = cli(capsys, monkeypatch, url, "import", "wordpress", WXR_SAMPLE)
    assert code == 0, err
    return ids


def check_populated(url: str) -> None:
    """Every table the backup holds has rows, but the ones nothing here fills (so the comparison means something)."""
    rows = snapshot(url)
    empty = {name for name, found in rows.items() if not found}
    assert empty == {"mail_link_use"}, f"populate() should fill these tables too: {empty - {'mail_link_use'}}"
    assert {c["status"] for c in rows["comment"]} == {"approved", "pending", "spam", "trash"}
    assert any(c["origin_key"] for c in rows["comment"]) and any(c["parent_id"] for c in rows["comment"])
    assert any(p["closed"] for p in rows["page"])


def restored_equals(source: str, target: str) -> None:
    expected, got = snapshot(source), snapshot(target)
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == expected[name], name


# ---- the JSON Lines backup and its restore ----------------------------------------------


async def test_backup_restores_every_row_exactly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    clients: Clients, mod: httpx.AsyncClient, client: httpx.AsyncClient, tmp_path: Path,
) -> None:
    ids = await populate(clients, mod, capsys, monkeypatch, database_url)
    check_populated(database_url)
    thread = (await client.get("/api/comments", params={"page": "/p/1"})).json()
    full = (await mod.get(f"/api/admin/comments/{ids['first']}")).json()
    file = tmp_path / "backup.jsonl"
    code, out, err = cli(capsys, monkeypatch, database_url, "export", file)
    assert code == 0, err
    assert out.startswith(f"wrote {file}: ")

    lines = [orjson.loads(line) for line in file.read_bytes().splitlines()]
    header, end = lines[0], lines[-1]
    schema = head_revision(base_settings(database_url))
    assert (header["format"], header["version"], header["schema"]) == ("comments-backup", 1, schema)
    assert OUTBOX_TABLES <= set(header["tables"]) and not EXCLUDED & set(header["tables"])
    assert {line["t"] for line in lines[1:-1]} <= set(header["tables"])
    assert end == {"end": {name: len(rows) for name, rows in snapshot(database_url).items()}}
    assert file.stat().st_mode & 0o777 == 0o600  # readable by its owner only
    text = file.read_text(encoding="utf-8")
    # Emails as stored (encrypted), so the file is as safe as the database; no token, no secret.
    assert "ann@example.net" not in text and "@example.org" not in text
    assert mod.headers["Authorization"].split()[1] not in text
    hidden = snapshot(database_url, {"secret", "moderator_token"})
    assert hidden["secret"] and hidden["moderator_token"]
    for row in hidden["secret"]:
        assert row["value"] not in text
    for row in hidden["moderator_token"]:
        assert row["token_hash"] not in text

    code, out, err = cli(capsys, monkeypatch, fresh_url, "import", "backup", file)
    assert code == 0, err
    assert out.startswith("restored ") and f"{len(snapshot(database_url)['comment'])} comment" in out
    restored_equals(database_url, fresh_url)

    # The restored service answers as the old one did (same email key; a new moderator token).
    app = create_app(base_settings(fresh_url))
    try:
        token = store.create_token(app.state.service.db, "restorer", store.utcnow())
        transport = httpx.ASGITransport(app=app, client=("192.0.2.99", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            assert (await other.get("/api/comments", params={"page": "/p/1"})).json() == thread
            other.headers["Authorization"] = f"Bearer {token}"
            assert (await other.get(f"/api/admin/comments/{ids['first']}")).json() == full
            assert full["email"].endswith("@example.org")
            listing = (await other.get("/api/admin/comments", params={"status": "spam"})).json()
            was = (await mod.get("/api/admin/comments", params={"status": "spam"})).json()
            assert (listing["counts"], listing["items"]) == (was["counts"], was["items"])
            # New rows continue after the restored ids (PostgreSQL's sequences were moved on).
            created = await other.post("/api/comments", json={"page": "/p/1", "body": "After the restore.",
                                                              "author": "New", "email": "new@example.com"})
            assert created.status_code == 202, created.text
            assert created.json()["id"] > max(ids.values())
    finally:
        app.state.service.db.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs COMMENTS_TEST_DATABASE_URL (PostgreSQL)")
async def test_a_sqlite_backup_restores_into_postgresql(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str,
    clients: Clients, mod: httpx.AsyncClient, tmp_path: Path,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("from SQLite only")
    await populate(clients, mod, capsys, monkeypatch, database_url)
    file = tmp_path / "backup.jsonl"
    assert cli(capsys, monkeypatch, database_url, "export", file)[0] == 0
    for target in pg_schema(f"cmt_cross_{os.getpid()}"):
        code, _, err = cli(capsys, monkeypatch, target, "import", "backup", file)
        assert code == 0, err
        restored_equals(database_url, target)


async def test_a_restore_into_a_database_with_rows_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str,
    clients: Clients, mod: httpx.AsyncClient, tmp_path: Path,
) -> None:
    await populate(clients, mod, capsys, monkeypatch, database_url)
    file = tmp_path / "backup.jsonl"
    assert cli(capsys, monkeypatch, database_url, "export", file)[0] == 0
    before = snapshot(database_url)
    code, out, err = cli(capsys, monkeypatch, database_url, "import", "backup", file)
    assert (code, out) == (1, "")
    assert err.startswith(f"comments: {file}: the database is not empty (table ")
    assert err.rstrip().endswith("has rows): restore into a fresh database")
    assert snapshot(database_url) == before


def test_a_reply_stored_before_its_parent_restores(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    tmp_path: Path,
) -> None:
    """An import links a reply to a parent further on in its file, so a reply can have a smaller id
    than its parent; the restore must not depend on parents coming first (small batches here)."""
    items = "".join(
        f"<wp:comment><wp:comment_id>{n}</wp:comment_id><wp:comment_author>A</wp:comment_author>"
        f"<wp:comment_author_email>a{n}@example.org</wp:comment_author_email>"
        f"<wp:comment_date_gmt>2023-01-01 10:0{n}:00</wp:comment_date_gmt>"
        f"<wp:comment_content>Comment {n}</wp:comment_content><wp:comment_approved>1</wp:comment_approved>"
        f"<wp:comment_parent>{parent}</wp:comment_parent></wp:comment>\n"
        for n, parent in ((1, 5), (2, 0), (3, 0), (4, 0), (5, 2))
    )
    source = tmp_path / "forward.xml"
    source.write_text('<?xml version="1.0"?>\n<rss xmlns:wp="http://wordpress.org/export/1.2/"><channel>\n'
                      "<wp:wxr_version>1.2</wp:wxr_version>\n<item><link>https://site.example/a/</link>\n"
                      f"{items}</item></channel></rss>\n", encoding="utf-8")
    assert cli(capsys, monkeypatch, database_url, "import", "wordpress", source)[0] == 0
    assert {(c["id"], c["parent_id"]) for c in snapshot(database_url)["comment"]} >= {(1, 5)}
    file = tmp_path / "backup.jsonl"
    assert cli(capsys, monkeypatch, database_url, "export", file)[0] == 0
    monkeypatch.setattr(backup, "BATCH", 2)
    code, _, err = cli(capsys, monkeypatch, fresh_url, "import", "backup", file)
    assert code == 0, err
    restored_equals(database_url, fresh_url)


@pytest.fixture
def small_backup(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str,
                 tmp_path: Path) -> list[bytes]:
    """The lines of a backup of the imported WXR sample."""
    assert cli(capsys, monkeypatch, database_url, "import", "wordpress", WXR_SAMPLE)[0] == 0
    file = tmp_path / "small.jsonl"
    assert cli(capsys, monkeypatch, database_url, "export", file)[0] == 0
    return file.read_bytes().splitlines(keepends=True)


def header(lines: list[bytes], **changes: Any) -> list[bytes]:
    return [orjson.dumps({**orjson.loads(lines[0]), **changes}) + b"\n", *lines[1:]]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda lines: lines[:-1], "the file is cut short (no end line): nothing was restored"),
    (lambda lines: [*lines[:-2], lines[-2][:25]], "line {n}: not JSON"),
    (lambda lines: [*lines[:-1], b'{"end": {"comment": 99}}\n'],
     "the row counts do not match the end line: nothing was restored"),
    (lambda lines: header(lines, schema="0001"),
     "the backup is of schema 0001, this database is at {head}: restore with the same version of comments"),
    (lambda lines: header(lines, version=2), "backup format version 2 is not 1"),
    (lambda lines: header(lines, format="something-else"), "not a comments backup (made by `comments export`)"),
    (lambda lines: [], "the file is empty"),
    (lambda lines: [b"<?xml version='1.0'?>\n"], "line 1: not JSON"),
    (lambda lines: [*lines[:3], b'{"t": "secret", "r": {"name": "master"}}\n', *lines[3:]],
     "line 4: not a row of a known table"),
    (lambda lines: [line.replace(b'"page_id":1,', b'"page_id":99,') for line in lines],
     "the rows do not fit together or this database (IntegrityError): nothing was restored"),
    (lambda lines: [line.replace(b'"body_hash":', b'"no_such_column":') for line in lines],
     "line {c}: table comment has no column 'no_such_column'"),
])
def test_a_damaged_or_foreign_backup_is_refused_and_nothing_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    small_backup: list[bytes], tmp_path: Path, damage: Any, message: str,
) -> None:
    lines = damage(small_backup)
    file = tmp_path / "damaged.jsonl"
    file.write_bytes(b"".join(lines))
    code, out, err = cli(capsys, monkeypatch, fresh_url, "import", "backup", file)
    assert (code, out) == (1, "")
    first_comment = next((n for n, line in enumerate(lines, 1) if line.startswith(b'{"t":"comment"')), None)
    head = head_revision(base_settings(fresh_url))
    assert err.strip() == f"comments: {file}: " + message.format(n=len(lines), c=first_comment, head=head)
    assert row_count(fresh_url) == 0


def test_a_restore_with_another_email_key_gives_the_key_error_at_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    small_backup: list[bytes], tmp_path: Path,
) -> None:
    file = tmp_path / "small.jsonl"
    file.write_bytes(b"".join(small_backup))
    other = new_key()
    # What the code does: the restore itself does not check the key (the rows are copied as they are) ...
    code, _, err = cli(capsys, monkeypatch, fresh_url, "import", "backup", file, key=other)
    assert code == 0, err
    # ... and the next start (serve and every command migrate first) stops with the key error.
    code, out, err = cli(capsys, monkeypatch, fresh_url, "db", "upgrade", key=other)
    assert (code, out) == (2, "")
    assert err.strip() == ("comments: email key: COMMENTS_EMAIL_KEY does not hold the key that encrypted this "
                           "database's email addresses (restore the right key; nothing was changed)")
    # With the right key, it starts and the addresses read.
    code, out, err = cli(capsys, monkeypatch, fresh_url, "db", "upgrade")
    assert (code, out.strip()) == (0, "database is up to date"), err


def test_a_backup_taken_while_comments_arrive_is_one_moment(
    database_url: str, service: Any, settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, fresh_url: str,
) -> None:
    """Rows written while the export runs are all in the backup or all out of it, so it restores."""
    service.create_comment(CommentIn(page="/p/1", body="Before.", author="Ann", email="ann@example.org"),
                           "192.0.2.1", None)

    class Writer(io.BytesIO):
        arrived = False

        def write(self, data: bytes) -> int:  # type: ignore[override]
            if not self.arrived and data.startswith(b'{"t":"page"'):
                # A comment on a new page arrives after the pages were read, before the comments are.
                self.arrived = True
                service.create_comment(CommentIn(page="/p/new", body="During.", author="Bob",
                                                 email="bob@example.org"), "192.0.2.2", None)
            return super().write(data)

    out = Writer()
    database = Database(settings)
    try:
        counts = backup.export_backup(database, out)
    finally:
        database.dispose()
    assert out.arrived
    assert (counts["page"], counts["comment"]) == (1, 1)
    file = tmp_path / "live.jsonl"
    file.write_bytes(out.getvalue())
    code, _, err = cli(capsys, monkeypatch, fresh_url, "import", "backup", file)
    assert code == 0, err


# ---- the WordPress export -------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"ip_retention_days": 30}])  # addresses and user agents kept
async def test_wxr_export_imports_back_with_our_wordpress_importer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    clients: Clients, mod: httpx.AsyncClient, tmp_path: Path,
) -> None:
    monkeypatch.setenv("COMMENTS_IP_RETENTION_DAYS", "30")
    await populate(clients, mod, capsys, monkeypatch, database_url)
    file = tmp_path / "export.xml"
    code, _, err = cli(capsys, monkeypatch, database_url, "export", file, "--format", "wxr", "--site", SITE + "/")
    assert code == 0, err
    assert "it holds email addresses in clear" in err
    root = ElementTree.parse(file).getroot()  # well-formed
    assert root.tag == "rss"

    source = comments_by_id(database_url)
    assert any(row["user_agent"] for row in source.values())  # so the comparison below shows they travel
    code, out, err = cli(capsys, monkeypatch, fresh_url, "import", "wordpress", "--page-from", "link", file)
    assert code == 0, err
    assert out.splitlines() == [f"imported {len(source)}, already present 0, re-parented 0, skipped 0, failed 0 "
                                f"(of {len(source)} comments read)"]
    back = comments_by_id(fresh_url)
    keys = {origin_key("wordpress", SITE, str(comment_id)): comment_id for comment_id in source}
    as_source = {keys[row["origin_key"]]: row for row in back.values()}
    assert set(as_source) == set(source)
    new_to_old = {row["id"]: old for old, row in as_source.items()}
    for old, row in as_source.items():
        was = source[old]
        fields = ("page", "status", "author", "email", "url", "body", "ip", "user_agent")
        assert [row[name] for name in fields] == [was[name] for name in fields], old
        assert new_to_old.get(row["parent_id"]) == was["parent_id"], old
        # WXR dates have whole seconds.
        assert row["created_at"] == was["created_at"].replace(microsecond=0)
    assert {r["page"] for r in back.values()} == {r["page"] for r in source.values()}


async def test_wxr_export_leaves_out_what_xml_cannot_hold(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, fresh_url: str,
    clients: Clients, tmp_path: Path,
) -> None:
    # The forms refuse control characters but let the noncharacters U+FFFE and U+FFFF through
    # (the sanitiser drops them from body_html); XML 1.0 has no way to write them.
    response = await post(clients, page="/p/\uffff", author="Zed\ufffe", body="odd \uffff and \ufffe here")
    assert response.status_code == 202, response.text
    file = tmp_path / "export.xml"
    assert cli(capsys, monkeypatch, database_url, "export", file, "--format", "wxr", "--site", SITE)[0] == 0
    ElementTree.parse(file)  # well-formed
    code, out, err = cli(capsys, monkeypatch, fresh_url, "import", "wordpress", file)
    assert (code, out.splitlines()[0]) == (
        0, "imported 1, already present 0, re-parented 0, skipped 0, failed 0 (of 1 comments read)"), out + err
    [row] = comments_by_id(fresh_url).values()
    assert (row["page"], row["author"], row["body"]) == ("/p/", "Zed", "odd  and  here")


def comments_by_id(url: str) -> dict[int, dict[str, Any]]:
    """The comments with their page key and email in clear."""
    settings = base_settings(url)
    database = Database(settings)
    try:
        ring = database.keyring()
        rows = snapshot(url, {"comment", "page"})
    finally:
        database.dispose()
    pages = {p["id"]: p["key"] for p in rows["page"]}
    return {c["id"]: {**c, "page": pages[c["page_id"]], "email": ring.decrypt(c["email"])} for c in rows["comment"]}
