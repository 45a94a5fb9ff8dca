"""Privacy at rest: no reader's address in clear in the database (SQLite file and WAL, PostgreSQL
rows) or in any log line, client addresses anonymised, and plain emails migrated to ciphertext."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from conftest import PG_URL, TEST_EMAIL_KEY, Clients, base_settings

from comments import db as dbmod
from comments import store
from comments.app import create_app
from comments.forms import normalise_email
from comments.models import Comment, ModerationAction, RateEvent
from comments.settings import Settings

PAGE = "/2026/privacy-at-rest/"
OTHER_PAGE = "/2026/another-article/"
AGENT = "RestProbe/2.0 (distinctive-agent)"
BODY_MARK = "Quokka-marmalade"
ADDRESSES = {
    "mixed": "Mixed.Case+Tag@Example.COM",
    "umlaut": "Jürgen@example.org",
    "idn": "josé.lópez@Bücher.example",
    "cyrillic": "Юлия.Иванова@пример.рф",
    "shout": "SHOUTING.READER+News@EXAMPLE.NET",
}
RULES = {"moderation": "all", "moderation_words": [], "blocked_words": [], "max_links": 2,
         "auto_approve_known_authors": True, "flood_seconds": 0, "edit_window_seconds": 900}


async def put_rules(mod: httpx.AsyncClient, **changes: Any) -> None:
    """Replace the rules with the current ones changed (other rules may exist that these tests do not know)."""
    current = (await mod.get("/api/admin/rules")).json()
    r = await mod.put("/api/admin/rules", json={**current, **changes})
    assert r.status_code == 200, r.text

comment_t: sa.Table = Comment.__table__  # type: ignore[attr-defined]
rate_t: sa.Table = RateEvent.__table__  # type: ignore[attr-defined]
action_t: sa.Table = ModerationAction.__table__  # type: ignore[attr-defined]


# ---- what must never be found ------------------------------------------------------------


def address_forms(address: str) -> set[str]:
    """The address as typed, normalised, in lower, upper and folded case, with an ASCII (punycode)
    domain, and its local part alone."""
    normalised = normalise_email(address)
    forms: set[str] = set()
    for base in (address, normalised):
        local, domain = base.rsplit("@", 1)
        ascii_domain = domain.encode("idna").decode("ascii")
        for whole in (base, f"{local}@{ascii_domain}", local + "@"):
            forms |= {whole, whole.lower(), whole.upper(), whole.casefold()}
        forms |= {local, local.lower(), local.upper()}
    return forms


def needles(addresses: list[str]) -> dict[bytes, str]:
    """Every form of every address in UTF-8, UTF-16-LE and UTF-16-BE, lower-cased (ASCII)."""
    found = {}
    for address in addresses:
        for form in address_forms(address):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                found[form.encode(encoding).lower()] = f"{form!r} in {encoding}"
    return found


def leaks(blob: bytes, addresses: list[str]) -> list[str]:
    """The forms of the addresses found in blob, without regard to (ASCII) case."""
    low = blob.lower()
    return sorted(name for needle, name in needles(addresses).items() if needle in low)


def text_leaks(text: str, addresses: list[str]) -> list[str]:
    folded = text.casefold()
    return sorted(form for address in addresses for form in address_forms(address) if form.casefold() in folded)


def test_the_leak_finder_finds_every_form() -> None:
    for address in ADDRESSES.values():
        for form in address_forms(address):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                blob = b"\x00junk" + form.encode(encoding) + b"junk\xff"
                assert leaks(blob, [address]), (form, encoding)
        assert leaks(address.swapcase().encode("utf-16-le"), [address]) or not address.isascii()
    assert leaks(b"Mixed.CASE+tag@example.com", [ADDRESSES["mixed"]])
    assert leaks("xn--bcher-kva.example".join(["josé.lópez@", ""]).encode(), [ADDRESSES["idn"]])
    assert not leaks(b"e1.0123456789.AAAA reader@example.org", list(ADDRESSES.values()))


# ---- a session that touches every endpoint -------------------------------------------------


def reader(clients: Clients, ip: str | None = None) -> httpx.AsyncClient:
    client = clients.client(ip)
    client.headers["User-Agent"] = AGENT
    return client


class Session:
    """Drives every public and moderation endpoint with the recognisable addresses in play."""

    def __init__(self, clients: Clients, mod: httpx.AsyncClient) -> None:
        self.clients = clients
        self.mod = mod
        self.n = 0
        self.ids: dict[str, list[int]] = {key: [] for key in ADDRESSES}
        self.tokens: dict[int, str] = {}

    def body(self) -> str:
        self.n += 1
        return f"{BODY_MARK} number {self.n}: a considered opinion."

    async def leave(self, who: str, *, email: str | None = None, page: str = PAGE, form: bool = False,
                    expect: int = 202, **extra: Any) -> dict[str, Any]:
        fields = {"page": page, "author": f"Reader {who.title()}", "body": self.body(),
                  "email": email or ADDRESSES[who], "url": f"https://{who}.example/", **extra}
        client = reader(self.clients)
        r = await (client.post("/api/comments", data=fields) if form else client.post("/api/comments", json=fields))
        assert r.status_code == expect, r.text
        data: dict[str, Any] = r.json()
        self.ids[who].append(data["id"])
        self.tokens[data["id"]] = data["edit_token"]
        return data

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> httpx.Response:
        r = await self.mod.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r

    async def run(self) -> None:
        mod = self.mod
        await put_rules(mod, **RULES)
        # leave replies: JSON and forms, two pages, every address in its own case
        for who in ADDRESSES:
            await self.leave(who)
            await self.leave(who, form=True, email=ADDRESSES[who].swapcase() if who == "mixed" else None,
                             page=OTHER_PAGE)
        first = {who: ids[0] for who, ids in self.ids.items()}
        for comment_id in first.values():
            await self.ok("PATCH", f"/api/admin/comments/{comment_id}", json={"status": "approved"})
        # a known author skips the queue; a reply; a duplicate in another case; a malformed address
        await self.leave("umlaut", expect=201)
        await self.leave("idn", parent=first["mixed"], expect=201)
        dup = {"page": PAGE, "author": "Reader Mixed", "email": ADDRESSES["mixed"].upper(),
               "body": f"{BODY_MARK} number 1: a considered opinion."}
        r = await reader(self.clients).post("/api/comments", json=dup)
        assert r.status_code == 409, r.text
        r = await reader(self.clients).post("/api/comments", json={**dup, "email": ADDRESSES["umlaut"] + " x",
                                                                  "body": self.body()})
        assert r.status_code == 422, r.text
        # the moderators' lists, search by every address (in another case), the full view
        for status in ("pending", "approved", "spam", "trash"):
            await self.ok("GET", "/api/admin/comments", params={"status": status})
        for who, address in ADDRESSES.items():
            for probe in (address, address.upper(), address.lower()):
                for status in ("pending", "approved"):
                    r = await self.ok("GET", "/api/admin/comments", params={"status": status, "q": probe})
                    for item in r.json()["items"]:
                        assert item["email"].casefold() == normalise_email(address).casefold(), item
            r = await self.ok("GET", f"/api/admin/comments/{first[who]}")
            assert r.json()["email"] == normalise_email(address)
        # moderator edits, status changes, bulk, delete
        target = self.ids["shout"][1]
        await self.ok("PATCH", f"/api/admin/comments/{target}",
                      json={"body": f"{BODY_MARK} edited by a moderator.", "author": "Renamed Reader",
                            "url": "https://renamed.example/"})
        await self.ok("PATCH", f"/api/admin/comments/{target}", json={"url": None, "status": "spam"})
        await self.ok("PATCH", f"/api/admin/comments/{self.ids['cyrillic'][1]}", json={"status": "trash"})
        r = await self.ok("POST", "/api/admin/comments/bulk",
                          json={"ids": [self.ids["mixed"][1], self.ids["idn"][1], 999999], "status": "approved"})
        assert r.json()["missing"] == [999999]
        await self.ok("DELETE", f"/api/admin/comments/{self.ids['cyrillic'][1]}", 204)
        # the author's own edit and delete
        mine = self.ids["umlaut"][1]
        r = await reader(self.clients).patch(f"/api/comments/{mine}", headers={"X-Edit-Token": self.tokens[mine]},
                                             json={"body": f"{BODY_MARK} edited by its author."})
        assert r.status_code == 200, r.text
        r = await reader(self.clients).get(f"/api/comments/{mine}", headers={"X-Edit-Token": self.tokens[mine]})
        assert r.status_code == 200, r.text
        extra = await self.leave("shout", expect=201)  # a known author by now
        r = await reader(self.clients).delete(f"/api/comments/{extra['id']}",
                                              headers={"X-Edit-Token": extra["edit_token"]})
        assert r.status_code == 204, r.text
        # rules, pages, the public side
        await put_rules(mod, moderation_words=["casino"])
        await self.ok("GET", "/api/admin/rules")
        await self.ok("PATCH", "/api/admin/pages", params={"page": OTHER_PAGE}, json={"closed": True})
        await self.ok("PATCH", "/api/admin/pages", params={"page": OTHER_PAGE}, json={"closed": False})
        await self.ok("GET", "/api/admin/pages")
        public = reader(self.clients)
        assert (await public.get("/api/comments", params={"page": PAGE})).status_code == 200
        assert (await public.get("/api/counts", params=[("page", PAGE), ("page", OTHER_PAGE)])).status_code == 200
        assert (await public.get(f"/api/comments/{first['mixed']}")).status_code == 200
        # export everyone, then erase two people (body kept, body replaced), then the audit log
        for who, address in ADDRESSES.items():
            r = await self.ok("GET", "/api/admin/people", params={"email": address.swapcase()})
            assert r.json()["comments"], who
        await self.ok("GET", "/api/admin/people", params={"email": "nobody@example.org"})
        await self.ok("GET", "/api/admin/people", params={"email": f"{ADDRESSES['idn']}@"}, status=422)
        r = await self.ok("DELETE", "/api/admin/people", params={"email": ADDRESSES["shout"], "body": "keep"})
        assert r.json()["erased"] >= 1
        r = await self.ok("DELETE", "/api/admin/people",
                          params={"email": ADDRESSES["cyrillic"].upper(), "body": "replace"})
        assert r.json()["erased"] >= 1
        await self.ok("GET", "/api/admin/audit", params={"limit": 200})
        r = await mod.get("/api/admin/audit", params={"action": "export"})
        assert len(r.json()["items"]) == len(ADDRESSES) + 1


async def run_session(clients: Clients, mod: httpx.AsyncClient) -> Session:
    session = Session(clients, mod)
    await session.run()
    return session


def table_texts(service: Any) -> dict[str, list[str]]:
    """Every value of the tables that hold personal data, as text."""
    found: dict[str, list[str]] = {}
    with service.db.read() as conn:
        for table in (comment_t, rate_t, action_t):
            found[table.name] = [str(v) for row in conn.execute(sa.select(table)) for v in row if v is not None]
        found["email"] = [str(v) for v in conn.execute(sa.select(comment_t.c.email)).scalars()]
    return found


def sqlite_path(settings: Settings) -> Path | None:
    url = sa.engine.make_url(settings.database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def read_files(path: Path) -> dict[str, bytes]:
    files = {}
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            files[candidate.name] = candidate.read_bytes()
    return files


# ---- 6. the database holds no address in clear ---------------------------------------------


async def test_no_address_in_clear_in_the_database(clients: Clients, mod: httpx.AsyncClient, service: Any,
                                                   settings: Settings) -> None:
    await run_session(clients, mod)
    addresses = list(ADDRESSES.values())
    texts = table_texts(service)
    assert texts["email"] and all("@" not in value for value in texts["email"]), texts["email"]
    assert all(value == "" or value.startswith("e1.") for value in texts["email"])
    for table in ("comment", "rate_event", "moderation_action"):
        hits = [(value, text_leaks(value, addresses)) for value in texts[table] if text_leaks(value, addresses)]
        assert hits == [], (table, hits)

    path = sqlite_path(settings)
    if path is None:
        return
    # while the app's engine is still open: the WAL holds the recent writes
    wal = Path(str(path) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    files = read_files(path)
    assert files[path.name] and files[wal.name]
    assert BODY_MARK.encode() in files[path.name] + files[wal.name]  # the search would see text
    for name, blob in files.items():
        assert leaks(blob, addresses) == [], name
    # after a checkpoint, and after the last connection closes
    with service.db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    for name, blob in read_files(path).items():
        assert leaks(blob, addresses) == [], name
    service.db.dispose()
    for name, blob in read_files(path).items():
        assert leaks(blob, addresses) == [], name


# ---- 6. no address and no body in any log line or error answer -------------------------------


class Boom(RuntimeError):
    pass


def record_texts(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    formatter = logging.Formatter()
    texts = []
    for record in records:
        if record.name.startswith(("httpx", "httpcore")):
            continue  # the test's own HTTP client, not the service
        parts = [record.getMessage(), repr(record.args), str(record.msg)]
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        texts.append((record.name, "\n".join(parts)))
    return texts


async def test_no_address_or_body_in_logs_or_error_answers(
    clients: Clients, mod: httpx.AsyncClient, service: Any, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    await run_session(clients, mod)
    addresses = list(ADDRESSES.values())
    answers: list[httpx.Response] = []

    # a 500 from a store function whose exception message carries the address and the body
    def exploding(*args: Any, **_kwargs: Any) -> Any:
        raise Boom(f"failed for {args!r}")

    monkeypatch.setattr(store, "export_person", exploding)
    monkeypatch.setattr(store, "create_comment", exploding)
    monkeypatch.setattr(store, "erase_person", exploding)
    r = await mod.get("/api/admin/people", params={"email": ADDRESSES["umlaut"]})
    answers.append(r)
    r = await mod.delete("/api/admin/people", params={"email": ADDRESSES["idn"]})
    answers.append(r)
    r = await reader(clients).post("/api/comments", json={
        "page": PAGE, "author": "Reader", "email": ADDRESSES["mixed"], "body": f"{BODY_MARK} that explodes."})
    answers.append(r)
    assert [a.status_code for a in answers] == [500, 500, 500]
    monkeypatch.undo()
    # the ordinary errors, each with an address in the request
    r = await reader(clients).post("/api/comments", json={
        "page": PAGE, "author": "Reader", "email": f"{ADDRESSES['mixed']}@", "body": f"{BODY_MARK} bad address"})
    assert r.status_code == 422
    answers.append(r)
    r = await reader(clients).post("/api/comments", json={
        "page": PAGE, "author": "Reader Mixed", "email": ADDRESSES["mixed"],
        "body": f"{BODY_MARK} number 1: a considered opinion."})
    assert r.status_code == 409
    answers.append(r)
    r = await mod.get("/api/admin/people", params={"email": f"<{ADDRESSES['umlaut']}>"})
    assert r.status_code == 422
    answers.append(r)
    r = await mod.delete("/api/admin/people", params={"email": ADDRESSES["umlaut"], "body": "shred"})
    assert r.status_code == 422
    answers.append(r)
    r = await mod.get("/api/admin/comments", params={"q": ADDRESSES["umlaut"], "status": "nonsense"})
    assert r.status_code == 422
    answers.append(r)

    for answer in answers:
        body = answer.content.decode("utf-8")
        assert text_leaks(body, addresses) == [], (answer.status_code, body)
        assert BODY_MARK not in body and "Traceback" not in body and "Boom" not in body, body
    texts = record_texts(caplog.records)
    assert any("internal error" in text for _, text in texts)  # the 500s were logged ...
    assert any(name == "comments.access" for name, _ in texts)  # ... and so was every request
    for name, text in texts:
        assert text_leaks(text, addresses) == [], (name, text)
        assert BODY_MARK.casefold() not in text.casefold(), (name, text)
        assert "marmalade" not in text.casefold(), (name, text)


# ---- 2. client addresses ---------------------------------------------------------------------


def stored_rows(service: Any) -> dict[int, Any]:
    with service.db.read() as conn:
        return {row.id: row for row in conn.execute(sa.select(comment_t))}


async def post_from(clients: Clients, ip: str, n: int, **fields: Any) -> httpx.Response:
    return await reader(clients, ip).post("/api/comments", json={
        "page": PAGE, "author": "Reader", "email": f"addr{n}@example.org",
        "body": f"Address probe {n}.", **fields})


async def test_addresses_are_anonymised_at_once_by_default(clients: Clients, mod: httpx.AsyncClient,
                                                           service: Any) -> None:
    assert service.settings.ip_retention_days == 0
    v4 = await post_from(clients, "192.0.2.77", 1)
    v6 = await post_from(clients, "2001:db8:1:2::5", 2)
    assert v4.status_code == v6.status_code == 202
    rows = stored_rows(service)
    for response, anonymised in ((v4, "192.0.2.0"), (v6, "2001:db8:1::")):
        full = (await mod.get(f"/api/admin/comments/{response.json()['id']}")).json()
        assert full["ip"] == anonymised and full["user_agent"] is None
        row = rows[response.json()["id"]]
        assert (row.ip, row.ip_key, row.user_agent, row.personal_until) == (anonymised, None, None, None)


class TestAddressesKeptForAWhile:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"ip_retention_days": 7}

    async def test_kept_whole_then_anonymised_by_the_upkeep(self, clients: Clients, mod: httpx.AsyncClient,
                                                            service: Any) -> None:
        before = store.utcnow()
        v4 = await post_from(clients, "192.0.2.77", 1)
        v6 = await post_from(clients, "2001:db8:1:2::5", 2)
        ids = {v4.json()["id"]: ("192.0.2.77", "192.0.2.0"), v6.json()["id"]: ("2001:db8:1:2::5", "2001:db8:1::")}
        rows = stored_rows(service)
        for comment_id, (whole, _) in ids.items():
            full = (await mod.get(f"/api/admin/comments/{comment_id}")).json()
            assert full["ip"] == whole and full["user_agent"] == AGENT
            row = rows[comment_id]
            assert row.ip_key and whole not in row.ip_key and len(row.ip_key) == 64
            assert before + timedelta(days=7) <= row.personal_until <= store.utcnow() + timedelta(days=7)

        # not yet: a day before the time is up nothing changes
        assert store.run_upkeep(service.db, store.utcnow() + timedelta(days=6)).anonymised == 0
        done = store.run_upkeep(service.db, store.utcnow() + timedelta(days=8))
        assert done.anonymised == 2
        rows = stored_rows(service)
        for comment_id, (_, anonymised) in ids.items():
            full = (await mod.get(f"/api/admin/comments/{comment_id}")).json()
            assert full["ip"] == anonymised and full["user_agent"] is None
            row = rows[comment_id]
            assert (row.ip, row.ip_key, row.user_agent, row.personal_until) == (anonymised, None, None, None)
        assert store.run_upkeep(service.db, store.utcnow() + timedelta(days=9)).anonymised == 0


@pytest.mark.parametrize("settings_overrides", [{"rate_limit": "2/minute", "ip_retention_days": 0},
                                                {"rate_limit": "2/minute", "ip_retention_days": 7}])
async def test_the_rate_limit_counts_each_full_address_by_its_keyed_hash(
    clients: Clients, mod: httpx.AsyncClient, service: Any,
) -> None:
    await put_rules(mod, **{**RULES, "auto_approve_known_authors": False})
    assert [(await post_from(clients, "192.0.2.77", n)).status_code for n in range(3)] == [202, 202, 429]
    # the same /24 is another reader: the limit is per full address, not per anonymised one
    assert (await post_from(clients, "192.0.2.78", 3)).status_code == 202
    assert [(await post_from(clients, "2001:db8:1:2::5", n)).status_code for n in (4, 5, 6)] == [202, 202, 429]
    assert (await post_from(clients, "2001:db8:1:2::6", 7)).status_code == 202
    with service.db.read() as conn:
        keys = list(conn.execute(sa.select(rate_t.c.key)).scalars())
    assert keys
    for key in keys:
        kind, _, digest = key.partition(":")
        assert kind in {"ip", "email"} and len(digest) >= 32 and int(digest, 16) >= 0, key
        for plain in ("192.0.2", "2001:db8", "addr", "example.org"):
            assert plain not in key


# ---- 1. a migration moves plain emails into the encrypted form -------------------------------

LEGACY = {
    "Legacy.Reader+Old@Example.COM": "203.0.113.45",
    "jürgen.legacy@example.org": "2001:db8:9:8::7",
}
LEGACY_BODY = "Written before encryption existed."


def build_at_0001(settings: Settings) -> None:
    """A database at revision 0001 holding plain emails, full addresses and user agents."""
    engine = dbmod.create_db_engine(settings)
    try:
        config = dbmod.alembic_config(settings)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        now = store.utcnow() - timedelta(days=2)
        with engine.begin() as conn:
            page_id = conn.execute(sa.text(
                "INSERT INTO page (key, key_hash, closed, thread_version, created_at) "
                "VALUES (:k, :h, false, 0, :now) RETURNING id"),
                {"k": PAGE, "h": hashlib.sha256(PAGE.encode()).hexdigest(), "now": now}).scalar_one()
            for n, (email, ip) in enumerate(LEGACY.items()):
                body = f"{LEGACY_BODY} ({n})"
                conn.execute(sa.text(
                    "INSERT INTO comment (page_id, status, author, email, email_key, body, body_html, body_hash,"
                    " policy_version, ip, user_agent, spam_score, spam_reasons, created_at, updated_at) VALUES"
                    " (:page, :status, 'Legacy', :email, :ekey, :body, :html, :bhash, 1, :ip, :ua, 0, '[]', :now,"
                    " :now)"),
                    {"page": page_id, "status": "approved", "email": email,
                     "ekey": hashlib.sha256(email.encode()).hexdigest(), "body": body, "html": f"<p>{body}</p>",
                     "bhash": hashlib.sha256(" ".join(body.split()).casefold().encode()).hexdigest(),
                     "ip": ip, "ua": AGENT, "now": now})
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def legacy_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Settings for an empty database of the backend (a SQLite file, or a PostgreSQL schema of its own)."""
    if request.param == "sqlite":
        yield base_settings(f"sqlite:///{tmp_path / 'legacy.db'}")
        return
    assert PG_URL is not None
    schema = "cmt_legacy_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield base_settings(url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def migrated(legacy_settings: Settings) -> Any:
    build_at_0001(legacy_settings)
    dbmod.upgrade(legacy_settings)
    return create_app(legacy_settings)


async def test_the_migration_encrypts_plain_emails(legacy_settings: Settings) -> None:
    app = migrated(legacy_settings)
    service = app.state.service
    try:
        texts = table_texts(service)
        assert len(texts["email"]) == len(LEGACY)
        assert all(value.startswith(f"e1.{service.db.keyring().current_id}.") for value in texts["email"])
        for table in ("comment", "rate_event", "moderation_action"):
            assert [v for v in texts[table] if text_leaks(v, list(LEGACY))] == [], table
        token = store.create_token(service.db, "moderator", store.utcnow())
        transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers={"Authorization": f"Bearer {token}"}) as mod:
            r = await mod.get("/api/admin/comments", params={"status": "approved"})
            assert sorted(item["email"] for item in r.json()["items"]) == sorted(LEGACY)
            # full addresses kept so far are due now: the next upkeep anonymises them
            done = store.run_upkeep(service.db, store.utcnow() + timedelta(seconds=1))
            assert done.anonymised == len(LEGACY)
            r = await mod.get("/api/admin/comments", params={"status": "approved"})
            assert sorted(item["ip"] for item in r.json()["items"]) == ["2001:db8:9::", "203.0.113.0"]
            assert all(item["user_agent"] is None for item in r.json()["items"])
        path = sqlite_path(legacy_settings)
        if path is not None:  # the file and its WAL, while the app's engine is open ...
            assert Path(str(path) + "-wal").stat().st_size > 0
            for name, blob in read_files(path).items():
                assert leaks(blob, list(LEGACY)) == [], name
    finally:
        service.db.dispose()
    if path is not None:  # ... and once it is closed
        for name, blob in read_files(path).items():
            assert leaks(blob, list(LEGACY)) == [], name


async def test_migrated_emails_are_found_by_their_lookup_hash(legacy_settings: Settings) -> None:
    """The migration computes the same keyed hash the store looks up ('email:' + folded address)."""
    app = migrated(legacy_settings)
    service = app.state.service
    try:
        token = store.create_token(service.db, "moderator", store.utcnow())
        mod_transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 40000))
        reader_transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=mod_transport, base_url="http://testserver",
                                     headers={"Authorization": f"Bearer {token}"}) as mod, \
                httpx.AsyncClient(transport=reader_transport, base_url="http://testserver") as public:
            for email in LEGACY:
                r = await mod.get("/api/admin/people", params={"email": email.upper()})
                assert r.status_code == 200 and len(r.json()["comments"]) == 1, (email, r.text)
                r = await mod.get("/api/admin/comments", params={"status": "approved", "q": email})
                assert len(r.json()["items"]) == 1, (email, r.text)
            r = await public.post("/api/comments", json={
                "page": PAGE, "author": "Legacy", "email": "legacy.reader+old@example.com",
                "body": f"{LEGACY_BODY.upper()}   (0)"})
            assert r.status_code == 409, r.text
            r = await mod.delete("/api/admin/people", params={"email": "jürgen.legacy@example.org"})
            assert r.json() == {"erased": 1}
    finally:
        service.db.dispose()


def test_a_second_upgrade_changes_nothing(legacy_settings: Settings) -> None:
    build_at_0001(legacy_settings)
    dbmod.upgrade(legacy_settings)
    engine = dbmod.create_db_engine(legacy_settings)
    try:
        with engine.connect() as conn:
            before = conn.execute(sa.select(comment_t.c.email, comment_t.c.email_key)).all()
        dbmod.upgrade(legacy_settings, engine)
        with engine.connect() as conn:
            assert conn.execute(sa.select(comment_t.c.email, comment_t.c.email_key)).all() == before
    finally:
        engine.dispose()


def test_the_key_used_by_the_migration_is_the_configured_one(legacy_settings: Settings) -> None:
    build_at_0001(legacy_settings)
    dbmod.upgrade(legacy_settings)
    assert legacy_settings.email_key == TEST_EMAIL_KEY
    engine = dbmod.create_db_engine(legacy_settings)
    try:
        ring = dbmod.verify_keys(legacy_settings, engine).ring()
        with engine.connect() as conn:
            stored = list(conn.execute(sa.select(comment_t.c.email)).scalars())
    finally:
        engine.dispose()
    assert sorted(ring.decrypt(value) for value in stored) == sorted(LEGACY)
