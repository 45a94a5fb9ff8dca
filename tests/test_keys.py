"""The email key: made on first start (mode 0600, beside the database), checked at start (missing,
wrong or malformed stops the service with one line and changes nothing), and rotated without
downtime, resumably, by `comments keys rotate`."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import TEST_EMAIL_KEY, Clients, base_settings, command_line_environment, post
from sqlmodel import SQLModel

from comments import crypto
from comments import db as dbmod
from comments import store
from comments.app import create_app
from comments.cli import main
from comments.crypto import Keyring, KeyProblem, KeySource, new_key, parse_keys
from comments.models import Comment
from comments.settings import Settings

comment_t: sa.Table = Comment.__table__  # type: ignore[attr-defined]
PEOPLE = ["Rotating.Reader@Example.COM", "jürgen.rotation@example.org", "third+tag@bücher.example",
          "fourth@example.net", "fifth@example.net"]


# ---- helpers ------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[pytest.MonkeyPatch]:
    """The environment of an in-process `comments` command: only our COMMENTS_* variables, no .env
    in reach, the root logger's handlers put back afterwards (the CLI configures logging)."""
    with command_line_environment(monkeypatch, tmp_path, database_url, email_key=None):
        yield monkeypatch


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def instant_rechecks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Workers in this process re-read the key file on every use, so the command's waits for other
    workers to do so can be skipped: time.sleep only records how long it would have waited."""
    import time

    waits: list[float] = []
    monkeypatch.setattr(KeySource, "RECHECK_SECONDS", 0)
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def no_serving(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """`comments serve` must stop before it serves: uvicorn.run only records that it was called."""
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    return calls


def sqlite_file(url: str) -> Path | None:
    parsed = sa.engine.make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def snapshot(url: str) -> tuple[Any, ...]:
    """Everything in the database (and, for SQLite, the file's bytes)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            values = [tuple(map(str, row)) for table in SQLModel.metadata.sorted_tables
                      for row in conn.execute(sa.select(table))]
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    finally:
        engine.dispose()
    path = sqlite_file(url)
    raw = hashlib.sha256(path.read_bytes()).hexdigest() if path else None
    return raw, version, values


def stored(url: str) -> list[tuple[int, str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                sa.select(comment_t.c.id, comment_t.c.email, comment_t.c.email_key).order_by(comment_t.c.id))]
    finally:
        engine.dispose()


def key_ids(url: str) -> set[str]:
    return {email.split(".")[1] for _, email, _ in stored(url) if email}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def file_keys(path: Path) -> list[bytes]:
    return parse_keys(path.read_text(), str(path))


@pytest.fixture
async def populated(app: Any, clients: Clients, service: Any) -> str:
    """A database holding addresses encrypted with the test key; the app's engine closed again."""
    for email in PEOPLE[:3]:
        r = await post(clients, email=email)
        assert r.status_code == 202, r.text
    service.db.dispose()
    return str(service.settings.database_url)


# ---- a key file made on first start ---------------------------------------------------------


async def test_a_key_file_is_made_with_mode_0600_beside_the_database(
    database_url: str, tmp_path: Path
) -> None:
    path = sqlite_file(database_url)
    explicit = None if path else str(tmp_path / "keys" / "email.key")
    settings = base_settings(database_url, email_key=None, email_key_file=explicit)
    expected = Path(str(path) + ".email-key") if path else Path(explicit or "")
    assert settings.key_file == expected and not expected.exists()
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.5", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            r = await client.post("/api/comments", json={"page": "/k/", "author": "Ann", "body": "Hello.",
                                                         "email": PEOPLE[0]})
            assert r.status_code == 202, r.text
    finally:
        app.state.service.db.dispose()
    assert expected.exists() and mode(expected) == 0o600
    (key,) = file_keys(expected)
    assert key_ids(database_url) == {Keyring.key_id(key)}
    assert "Back this file up" in expected.read_text()


def test_db_upgrade_makes_the_key_file_beside_a_new_sqlite_database(
    cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str
) -> None:
    path = tmp_path / "fresh" / "site.db"
    path.parent.mkdir()
    cli.setenv("COMMENTS_DATABASE_URL", f"sqlite:///{path}")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    key_file = Path(str(path) + ".email-key")
    assert key_file.exists() and mode(key_file) == 0o600
    assert len(file_keys(key_file)) == 1
    before = key_file.read_bytes()
    assert run(capsys, "db", "upgrade")[0] == 0
    assert key_file.read_bytes() == before  # an existing key file is never replaced


def test_keys_new_prints_a_fresh_valid_key(cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, first, _ = run(capsys, "keys", "new")
    assert code == 0
    _, second, _ = run(capsys, "keys", "new")
    assert first != second
    assert [len(k) for k in parse_keys(first.strip(), "output")] == [32]


# ---- a missing, wrong or malformed key stops the service and changes nothing ----------------


def settings_without_key(url: str, key_file: Path) -> Settings:
    return base_settings(url, email_key=None, email_key_file=str(key_file))


async def test_verify_keys_refuses_a_missing_key(populated: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "email.key"
    settings = settings_without_key(populated, missing)
    engine = dbmod.create_db_engine(settings)
    try:
        with pytest.raises(KeyProblem) as caught:
            dbmod.verify_keys(settings, engine)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "COMMENTS_EMAIL_KEY" in message and str(missing) in message
    assert not missing.exists() and not missing.parent.exists()


async def test_verify_keys_refuses_a_wrong_key(populated: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text(new_key() + "\n")
    for settings, named in ((settings_without_key(populated, wrong), str(wrong)),
                            (base_settings(populated, email_key=new_key()), "COMMENTS_EMAIL_KEY")):
        engine = dbmod.create_db_engine(settings)
        try:
            with pytest.raises(KeyProblem) as caught:
                dbmod.verify_keys(settings, engine)
        finally:
            engine.dispose()
        assert named in str(caught.value)


async def test_the_right_key_among_others_is_accepted(populated: str) -> None:
    settings = base_settings(populated, email_key=f"{new_key()},{TEST_EMAIL_KEY}")
    engine = dbmod.create_db_engine(settings)
    try:
        ring = dbmod.verify_keys(settings, engine).ring()
    finally:
        engine.dispose()
    assert len(ring.keys) == 2


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]])
@pytest.mark.parametrize("problem", ["missing file", "wrong file", "wrong variable"])
async def test_a_missing_or_wrong_key_stops_start_with_one_line_and_changes_nothing(
    populated: str, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    command: list[str], problem: str,
) -> None:
    key_file = tmp_path / "keys" / "email.key"
    if problem == "wrong file":
        key_file.parent.mkdir()
        key_file.write_text(new_key() + "\n")
        os.chmod(key_file, 0o600)
        cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
        named = str(key_file)
    elif problem == "missing file":
        cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
        named = "COMMENTS_EMAIL_KEY"
    else:
        cli.setenv("COMMENTS_EMAIL_KEY", new_key())
        named = "COMMENTS_EMAIL_KEY"
    key_before = key_file.read_bytes() if key_file.exists() else None
    served = no_serving(cli)
    before = snapshot(populated)
    code, out, err = run(capsys, *command)
    assert code == 2, (out, err)
    assert out == "" and served == []
    assert len(err.strip().splitlines()) == 1, err
    assert named in err and "Traceback" not in err
    assert "missing" in err or "does not hold" in err or "no key" in err
    assert "restore" in err  # and how to fix it
    assert snapshot(populated) == before
    assert (key_file.read_bytes() if key_file.exists() else None) == key_before


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"], ["keys", "rotate"]])
async def test_a_malformed_key_variable_is_one_clear_line(
    populated: str, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    served = no_serving(cli)
    before = snapshot(populated)
    for value in ["not-a-key", "c2hvcnQ", f"{TEST_EMAIL_KEY},{TEST_EMAIL_KEY[:-4]}", ","]:
        cli.setenv("COMMENTS_EMAIL_KEY", value)
        code, out, err = run(capsys, *command)
        assert code == 2 and out == "" and served == [], (value, out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "COMMENTS_EMAIL_KEY" in err and ("32 bytes" in err or "no key" in err), err
        assert TEST_EMAIL_KEY not in err  # a key is never echoed
        assert snapshot(populated) == before


async def test_a_malformed_key_file_is_one_clear_line(
    populated: str, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    key_file = tmp_path / "bad.key"
    key_file.write_text("# comment\nnot a key at all\n")
    cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
    before = snapshot(populated)
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(key_file) in err and "32 bytes" in err, err
    assert snapshot(populated) == before


# ---- rotation -------------------------------------------------------------------------------


async def put_rules(mod: httpx.AsyncClient, **changes: Any) -> None:
    current = (await mod.get("/api/admin/rules")).json()
    r = await mod.put("/api/admin/rules", json={**current, **changes})
    assert r.status_code == 200, r.text


class KeyFileApp:
    """An app whose keys come from a key file, a moderator token, and readers."""

    def __init__(self, database_url: str, key_file: Path) -> None:
        self.settings = base_settings(database_url, email_key=None, email_key_file=str(key_file))
        self.app = create_app(self.settings)
        self.service = self.app.state.service
        self.clients = Clients(self.app)
        self.token = store.create_token(self.service.db, f"mod-{id(self)}", store.utcnow())
        self.mod = self.clients.client("192.0.2.250")
        self.mod.headers["Authorization"] = f"Bearer {self.token}"
        self.n = 0

    async def leave(self, email: str, body: str | None = None, expect: int = 202, page: str = "/rot/") -> int:
        self.n += 1
        r = await self.clients.client().post("/api/comments", json={
            "page": page, "author": "Rotating Reader", "email": email,
            "body": body or f"Rotation probe {self.n} by someone."})
        assert r.status_code == expect, r.text
        return int(r.json()["id"]) if expect in (201, 202) else 0

    async def emails(self) -> dict[int, str]:
        shown = {}
        for status in ("pending", "approved"):
            r = await self.mod.get("/api/admin/comments", params={"status": status, "limit": 200})
            assert r.status_code == 200, r.text
            shown |= {item["id"]: item["email"] for item in r.json()["items"]}
        return shown

    async def search(self, email: str) -> set[int]:
        found = set()
        for status in ("pending", "approved"):
            r = await self.mod.get("/api/admin/comments", params={"status": status, "q": email.upper()})
            found |= {item["id"] for item in r.json()["items"]}
        return found

    async def close(self) -> None:
        await self.clients.close()
        self.service.db.dispose()


@pytest.fixture
async def keyed(database_url: str, tmp_path: Path) -> Any:
    instance = KeyFileApp(database_url, tmp_path / "secrets" / "email.key")
    yield instance
    await instance.close()


async def test_keys_rotate_puts_a_new_key_first_and_reencrypts_everything(
    keyed: KeyFileApp, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str,
) -> None:
    instant_rechecks(cli)
    key_file = keyed.settings.key_file
    ids = {email: await keyed.leave(email) for email in PEOPLE}
    await put_rules(keyed.mod, auto_approve_known_authors=True, flood_seconds=0)
    r = await keyed.mod.patch(f"/api/admin/comments/{ids[PEOPLE[0]]}", json={"status": "approved"})
    assert r.status_code == 200
    (old_key,) = file_keys(key_file)
    old_id = Keyring.key_id(old_key)
    assert key_ids(database_url) == {old_id}
    before = await keyed.emails()

    cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 0, err
    new_key_, kept = file_keys(key_file)
    new_id = Keyring.key_id(new_key_)
    assert kept == old_key and new_id != old_id
    assert mode(key_file) == 0o600
    assert key_file.read_text().startswith("#")  # the file's own comment is kept
    assert new_id in out and "done" in out
    assert key_ids(database_url) == {new_id}
    ring = Keyring((new_key_,))
    for comment_id, email, email_key in stored(database_url):
        assert email_key == ring.lookup("email:" + ring.decrypt(email).casefold()), comment_id

    # the running app picks the new key up: full view, search, known authors, duplicates
    assert await keyed.emails() == before
    for email, comment_id in ids.items():
        assert comment_id in await keyed.search(email), email
    assert await keyed.leave(PEOPLE[0], expect=201) > 0  # a known author, found across the rotation
    await keyed.leave(PEOPLE[1].upper(), body="ROTATION probe 2 by   someone.", expect=409)
    r = await keyed.mod.get("/api/admin/people", params={"email": PEOPLE[2]})
    assert [c["id"] for c in r.json()["comments"]] == [ids[PEOPLE[2]]]
    assert r.json()["comments"][0]["email"] == (await keyed.emails())[ids[PEOPLE[2]]]
    # new comments are written under the new key
    await keyed.leave("after.rotation@example.org")
    assert key_ids(database_url) == {new_id}


async def test_an_interrupted_rotation_keeps_reads_working_and_resumes(
    keyed: KeyFileApp, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str,
) -> None:
    key_file = keyed.settings.key_file
    ids = {email: await keyed.leave(email) for email in PEOPLE}
    await put_rules(keyed.mod, flood_seconds=0)
    before = await keyed.emails()
    (old_key,) = file_keys(key_file)
    # "another worker": it read the key file before the rotation, and will not look at it again on
    # its own for half a minute; it must notice the new key when it meets a value encrypted with it
    # (30 s, not more: KeySource.refresh forces a re-read by setting the last check to monotonic 0)
    cli.setattr(KeySource, "RECHECK_SECONDS", 30)
    other = KeyFileApp(database_url, key_file)
    try:
        assert await other.emails() == before
        cli.setattr(store.rotation, "BATCH", 2)
        rotating = dbmod.Database(keyed.settings)
        try:
            KeySource(None, key_file).add_key()
            assert store.rotate_batch(rotating) == 2
            assert store.remaining(rotating) == len(PEOPLE) - 2
        finally:
            rotating.dispose()
        new_key_ = file_keys(key_file)[0]
        assert key_ids(database_url) == {Keyring.key_id(new_key_), Keyring.key_id(old_key)}
        # both workers read every address, under either key
        assert await other.emails() == before
        instant_rechecks(cli)
        assert await keyed.emails() == before
        for email, comment_id in ids.items():
            assert comment_id in await keyed.search(email), email
            assert comment_id in await other.search(email), email
        await keyed.leave(PEOPLE[0], body="Rotation probe 1 by someone.", expect=409)
        await other.leave(PEOPLE[4], body="Rotation probe 5 by someone.", expect=409)
    finally:
        await other.close()

    # the command resumes the unfinished rotation: no third key, everything under the new one
    cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 0, err
    assert file_keys(key_file) == [new_key_, old_key]
    assert key_ids(database_url) == {Keyring.key_id(new_key_)}
    assert await keyed.emails() == before


async def test_a_worker_that_has_not_reread_the_key_file_still_finds_rotated_rows(
    keyed: KeyFileApp, cli: pytest.MonkeyPatch, database_url: str,
) -> None:
    """The command waits for running workers to read the new key before it moves any row to it."""
    key_file = keyed.settings.key_file
    person = PEOPLE[1]
    await put_rules(keyed.mod, flood_seconds=0)
    for n in range(3):
        await keyed.leave(person, body=f"Mine, number {n}.")
    cli.setattr(KeySource, "RECHECK_SECONDS", 0.5)
    cli.setattr(store.rotation, "BATCH", 1)
    worker = KeyFileApp(database_url, key_file)
    erased: list[int] = []
    real_batch = store.rotate_batch

    class Enough(Exception):
        pass

    def batch_then_erase(db: Any) -> int:
        real_batch(db)
        # a moderator's erase reaches the other worker after the first batch; then stop the command
        erased.append(worker.service.erase_person(person, True, "moderator"))
        raise Enough

    try:
        worker.service.db.keyring()  # the worker has read the key file just now
        cli.setattr(store, "rotate_batch", batch_then_erase)
        cli.setenv("COMMENTS_EMAIL_KEY_FILE", str(key_file))
        with pytest.raises(Enough):
            main(["keys", "rotate"])
    finally:
        await worker.close()
    assert erased == [3]


def test_rotation_with_keys_in_the_variable(
    populated: str, cli: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    instant_rechecks(cli)
    old_id = Keyring.key_id(parse_keys(TEST_EMAIL_KEY, "test")[0])
    assert key_ids(populated) == {old_id}
    # only the old key and nothing to rotate: the command explains how to add one
    cli.setenv("COMMENTS_EMAIL_KEY", TEST_EMAIL_KEY)
    before = snapshot(populated)
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "COMMENTS_EMAIL_KEY" in err and "comments keys new" in err and TEST_EMAIL_KEY not in err
    assert snapshot(populated) == before
    # NEW,OLD: everything is re-encrypted under NEW
    fresh = new_key()
    cli.setenv("COMMENTS_EMAIL_KEY", f"{fresh},{TEST_EMAIL_KEY}")
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 0, err
    new_id = Keyring.key_id(parse_keys(fresh, "test")[0])
    assert key_ids(populated) == {new_id}
    ring = Keyring(tuple(parse_keys(fresh, "test")))
    assert sorted(ring.decrypt(email).casefold() for _, email, _ in stored(populated)) == sorted(
        p.casefold() for p in PEOPLE[:3])
    # and the service starts with NEW alone
    engine = dbmod.create_db_engine(base_settings(populated, email_key=fresh))
    try:
        dbmod.verify_keys(base_settings(populated, email_key=fresh), engine)
    finally:
        engine.dispose()
    # while the old key alone no longer opens the database
    cli.setenv("COMMENTS_EMAIL_KEY", TEST_EMAIL_KEY)
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 2 and "COMMENTS_EMAIL_KEY" in err


def test_stored_addresses_reveal_only_the_key_id() -> None:
    ring = Keyring(tuple(parse_keys(TEST_EMAIL_KEY, "test")))
    a, b = ring.encrypt("same@example.org"), ring.encrypt("same@example.org")
    assert a != b  # a fresh nonce each time: equal addresses do not look equal
    assert a.startswith(f"{crypto.PREFIX}.{ring.current_id}.") and "same" not in a
    assert ring.decrypt(a) == ring.decrypt(b) == "same@example.org"
    tampered = a[:-2] + ("A" if a[-2] != "A" else "B") + a[-1]
    with pytest.raises(KeyProblem):
        ring.decrypt(tampered)
    other = Keyring(tuple(parse_keys(new_key(), "test")))
    with pytest.raises(KeyProblem):
        other.decrypt(a)
    assert ring.lookup("email:x@example.org") != other.lookup("email:x@example.org")
    assert ring.lookup("email:x@example.org") != hashlib.sha256(b"email:x@example.org").hexdigest()


async def test_an_erase_during_a_rotation_batch_stays_erased(
    keyed: KeyFileApp, cli: pytest.MonkeyPatch, database_url: str,
) -> None:
    """An erase committed while a batch is being re-encrypted is not undone (compare-and-set)."""
    if sqlite_file(database_url):
        pytest.skip("SQLite writers are serialised (BEGIN IMMEDIATE): an erase cannot land inside a batch")
    cli.setattr(KeySource, "RECHECK_SECONDS", 0)
    person = PEOPLE[0]
    first = await keyed.leave(person)
    for email in PEOPLE[1:3]:
        await keyed.leave(email)
    KeySource(None, keyed.settings.key_file).add_key()
    real_reveal = store.rotation.reveal
    erased: list[int] = []
    eraser = threading.Thread(target=lambda: erased.append(keyed.service.erase_person(person, True, "moderator")))

    def reveal_then_erase(db: Any, value: str) -> str:
        if not eraser.is_alive() and not erased:
            # the batch has read its rows; a moderator's erase runs meanwhile (it may wait for a lock)
            eraser.start()
            eraser.join(timeout=1.0)
        return real_reveal(db, value)

    cli.setattr(store.rotation, "reveal", reveal_then_erase)
    rotating = dbmod.Database(keyed.settings)
    try:
        store.rotate_batch(rotating)
    finally:
        rotating.dispose()
        eraser.join(timeout=15)
    assert erased == [1]
    row = {comment_id: (email, key) for comment_id, email, key in stored(database_url)}[first]
    assert row == ("", "")
