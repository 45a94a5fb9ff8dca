"""A person's data by their email address: export and erase (/api/admin/people), and the audit log of
every moderator action (/api/admin/audit) that records both without the address."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import Clients, approve

from comments import sanitize, store
from comments.forms import normalise_email
from comments.models import Comment, RateEvent

PERSON = "Jürgen.Export+Tag@Bücher.example"
OTHER = "someone.else@example.org"
AGENT = "PeopleProbe/1.0"
PAGE = "/people/one/"
PAGE_TWO = "/people/two/"
comment_t: sa.Table = Comment.__table__  # type: ignore[attr-defined]
rate_t: sa.Table = RateEvent.__table__  # type: ignore[attr-defined]
EXPORT_FIELDS = {"id", "parent", "page", "status", "author", "email", "url", "body", "body_html", "ip",
                 "user_agent", "spam_score", "spam_reasons", "created_at", "updated_at", "personal_until"}
AUDIT_FIELDS = {"id", "created_at", "actor", "action", "comment_id", "from", "to"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ip_retention_days": 7}


def forms_of(address: str) -> set[str]:
    """The address in every spelling, and its common unsalted hashes."""
    normalised = normalise_email(address)
    local, domain = normalised.rsplit("@", 1)
    spellings = {address, normalised, f"{local}@{domain.encode('idna').decode()}", local}
    spellings |= {s.lower() for s in spellings} | {s.casefold() for s in spellings} | {s.upper() for s in spellings}
    hashes = {getattr(hashlib, name)(s.encode()).hexdigest() for s in spellings for name in ("md5", "sha1", "sha256")}
    return spellings | hashes


def mentions(text: str | None, address: str) -> list[str]:
    folded = (text or "").casefold()
    return [form for form in forms_of(address) if form.casefold() in folded]


async def put_rules(mod: httpx.AsyncClient, **changes: Any) -> None:
    current = (await mod.get("/api/admin/rules")).json()
    r = await mod.put("/api/admin/rules", json={**current, **changes})
    assert r.status_code == 200, r.text


class Readers:
    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.n = 0
        self.ips: dict[int, str] = {}

    async def leave(self, email: str, page: str = PAGE, expect: int = 202, **fields: Any) -> dict[str, Any]:
        self.n += 1
        ip = f"198.51.100.{self.n}"
        client = self.clients.client(ip)
        client.headers["User-Agent"] = AGENT
        mine = email.casefold() == PERSON.casefold()
        r = await client.post("/api/comments", json={
            "page": page, "author": "Jürgen" if mine else "Someone", "email": email,
            "body": f"Comment {self.n} for the people tests.",
            "url": "https://juergen.example/" if mine else "https://someone.example/", **fields})
        assert r.status_code == expect, r.text
        data: dict[str, Any] = r.json()
        self.ips[data["id"]] = ip
        return data


@pytest.fixture
async def readers(clients: Clients, mod: httpx.AsyncClient) -> Readers:
    await put_rules(mod, flood_seconds=0)
    return Readers(clients)


async def audit(mod: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await mod.get("/api/admin/audit", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# ---- export --------------------------------------------------------------------------------


async def test_export_returns_everything_stored_about_the_person(readers: Readers, mod: httpx.AsyncClient) -> None:
    top = await readers.leave(PERSON)
    await approve(mod, top["id"])
    theirs = await readers.leave(OTHER, parent=top["id"])
    await approve(mod, theirs["id"])
    reply = await readers.leave(PERSON, parent=theirs["id"])
    elsewhere = await readers.leave(PERSON.upper(), page=PAGE_TWO)
    spam = await readers.leave(PERSON, page=PAGE_TWO)
    assert (await mod.patch(f"/api/admin/comments/{spam['id']}", json={"status": "spam"})).status_code == 200
    mine = [top["id"], reply["id"], elsewhere["id"], spam["id"]]

    r = await mod.get("/api/admin/people", params={"email": PERSON.swapcase()})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    data = r.json()
    assert [c["id"] for c in data["comments"]] == mine  # oldest first, nobody else's
    for item in data["comments"]:
        assert set(item) == EXPORT_FIELDS, set(item) ^ EXPORT_FIELDS
        full = (await mod.get(f"/api/admin/comments/{item['id']}")).json()
        for name in set(full) & set(item):
            assert item[name] == full[name], name
        assert item["email"].casefold() == normalise_email(PERSON).casefold()  # in clear, for the moderator
        assert item["ip"] == readers.ips[item["id"]] and item["user_agent"] == AGENT
        assert item["url"] == "https://juergen.example/" and item["personal_until"]
        assert item["body"].startswith("Comment ") and item["body_html"].startswith("<p>")
    by_id = {c["id"]: c for c in data["comments"]}
    assert by_id[reply["id"]]["parent"] == theirs["id"] and by_id[elsewhere["id"]]["page"] == PAGE_TWO
    assert by_id[spam["id"]]["status"] == "spam" and by_id[top["id"]]["status"] == "approved"

    # the export is recorded, naming the person only by a keyed reference
    (row,) = await audit(mod, action="export")
    assert row["actor"] == "moderator" and row["comment_id"] is None
    assert "4 comments" in (row["to"] or "")
    for value in (row["from"], row["to"]):
        assert mentions(value, PERSON) == [], value


async def test_export_of_an_unknown_address_is_empty(mod: httpx.AsyncClient, readers: Readers) -> None:
    await readers.leave(OTHER)
    r = await mod.get("/api/admin/people", params={"email": "nobody.here@example.org"})
    assert r.status_code == 200
    assert r.json()["comments"] == []
    (row,) = await audit(mod, action="export")
    assert "0 comments" in row["to"] and mentions(row["to"], "nobody.here@example.org") == []


MALFORMED = [None, "", "   ", "not-an-address", "two@@example.org", "a@b@example.org", f"<{PERSON}>",
             f"{PERSON} x", "x" * 250 + "@example.org", "jürgen@", "@example.org"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_malformed_address_is_422(mod: httpx.AsyncClient, method: str) -> None:
    for email in MALFORMED:
        params = {} if email is None else {"email": email}
        r = await mod.request(method, "/api/admin/people", params=params)
        assert r.status_code == 422, (email, r.text)
        error = r.json()["error"]
        assert error["code"] == "validation_error" and "email" in error["fields"]
        if email and "@" in email:
            assert email not in r.text and mentions(r.text, PERSON) == []
    assert await audit(mod, action="export") == [] and await audit(mod, action="erase") == []


async def test_the_people_endpoints_need_a_moderator(clients: Clients, readers: Readers) -> None:
    await readers.leave(PERSON)
    anonymous = clients.client()
    for method in ("GET", "DELETE"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await anonymous.request(method, "/api/admin/people", params={"email": PERSON}, headers=headers)
            assert r.status_code == 401 and "Jürgen" not in r.text
    r = await anonymous.get("/api/admin/audit")
    assert r.status_code == 401


# ---- erase ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["keep", "replace"])
async def test_erase_anonymises_the_person_and_keeps_the_thread_readable(
    readers: Readers, mod: httpx.AsyncClient, clients: Clients, service: Any, body: str,
) -> None:
    top = await readers.leave(PERSON)
    await approve(mod, top["id"])
    reply = await readers.leave(OTHER, parent=top["id"])
    await approve(mod, reply["id"])
    deeper = await readers.leave(OTHER, parent=reply["id"], body="A reply to the reply.")
    await approve(mod, deeper["id"])
    other_top = await readers.leave(OTHER, page=PAGE_TWO)
    await put_rules(mod, auto_approve_known_authors=True)
    known = await readers.leave(PERSON, expect=201)  # a known author before the erase
    elsewhere = await readers.leave(PERSON, page=PAGE_TWO, expect=201)
    # a moderator's edits of the person's name and website are in the record, with from and to
    r = await mod.patch(f"/api/admin/comments/{top['id']}",
                        json={"author": "Jürgen Export", "url": "https://juergen-renamed.example/"})
    assert r.status_code == 200
    r = await mod.patch(f"/api/admin/comments/{other_top['id']}", json={"author": "Someone Renamed"})
    assert r.status_code == 200
    mine = [top["id"], known["id"], elsewhere["id"]]
    public = clients.client()
    before = await public.get("/api/comments", params={"page": PAGE})
    etag = before.headers["etag"]

    r = await mod.delete("/api/admin/people", params={"email": PERSON.upper(), "body": body})
    assert r.status_code == 200, r.text
    assert r.json() == {"erased": 3}

    note_html = sanitize.render(store.people.ERASED_NOTE)
    for comment_id in mine:
        full = (await mod.get(f"/api/admin/comments/{comment_id}")).json()
        assert full["author"] == "Anonymous"
        assert not full["email"] and full["url"] is None and full["ip"] is None and full["user_agent"] is None
        if body == "keep":
            assert full["body_html"].startswith("<p>Comment ")
        else:
            assert full["body_html"] == note_html
    with service.db.read() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(comment_t).where(comment_t.c.id.in_(mine)))}
        rate_keys = list(conn.execute(sa.select(rate_t.c.key)).scalars())
    for row in rows.values():
        assert (row.email, row.email_key, row.ip, row.ip_key, row.user_agent, row.personal_until) == (
            "", "", None, None, None, None)
        assert (row.body == store.people.ERASED_NOTE) == (body == "replace")
    lookups = service.db.keyring().lookups("email:" + normalise_email(PERSON).casefold())
    assert not any(key == "email:" + k[:60] for key in rate_keys for k in lookups)

    # the thread still reads: the erased comment stays, with its replies under it
    after = await public.get("/api/comments", params={"page": PAGE})
    assert after.headers["etag"] != etag
    stale = await public.get("/api/comments", params={"page": PAGE}, headers={"If-None-Match": etag})
    assert stale.status_code == 200
    thread = after.json()
    first = thread["comments"][0]
    assert first["id"] == top["id"] and first["author"] == "Anonymous" and first["url"] is None
    assert [r["id"] for r in first["replies"]] == [reply["id"]]
    assert [r["id"] for r in first["replies"][0]["replies"]] == [deeper["id"]]
    if body == "replace":
        assert first["body_html"] == note_html
    assert "Jürgen" not in after.text

    # the person is no longer found: not by export, search, or as a known author
    assert (await mod.get("/api/admin/people", params={"email": PERSON})).json()["comments"] == []
    for status in ("pending", "approved"):
        r = await mod.get("/api/admin/comments", params={"status": status, "q": PERSON})
        assert r.json()["items"] == []
    await readers.leave(PERSON, page="/people/three/", expect=202)
    # the record of the erased comments' edits no longer holds the old name or website
    for row in await audit(mod, comment=str(top["id"])):
        if row["action"] in ("edit_author", "edit_url"):
            assert row["from"] is None and row["to"] is None
    (kept,) = await audit(mod, comment=str(other_top["id"]), action="edit_author")
    assert (kept["from"], kept["to"]) == ("Someone", "Someone Renamed")
    # and the erase itself is recorded, without the address
    (row,) = await audit(mod, action="erase")
    assert row["actor"] == "moderator" and "3 comments" in row["to"]
    assert ("kept" if body == "keep" else "replaced") in row["to"]
    assert mentions(row["from"], PERSON) == [] and mentions(row["to"], PERSON) == []


async def test_erase_of_an_unknown_address_erases_nothing(mod: httpx.AsyncClient, readers: Readers) -> None:
    await readers.leave(OTHER)
    for body in ("keep", "replace"):
        r = await mod.delete("/api/admin/people", params={"email": "nobody.here@example.org", "body": body})
        assert r.status_code == 200 and r.json() == {"erased": 0}
    assert len(await audit(mod, action="erase")) == 2
    r = await mod.get("/api/admin/people", params={"email": OTHER})
    assert len(r.json()["comments"]) == 1


async def test_erase_with_a_bad_body_choice_is_422(mod: httpx.AsyncClient, readers: Readers) -> None:
    await readers.leave(PERSON)
    for body in ("", "shred", "KEEP", "keep,replace"):
        r = await mod.delete("/api/admin/people", params={"email": PERSON, "body": body})
        assert r.status_code == 422 and "body" in r.json()["error"]["fields"], body
    assert len((await mod.get("/api/admin/people", params={"email": PERSON})).json()["comments"]) == 1


async def test_erase_twice_reports_nothing_the_second_time(mod: httpx.AsyncClient, readers: Readers) -> None:
    await readers.leave(PERSON)
    await readers.leave(PERSON, page=PAGE_TWO)
    assert (await mod.delete("/api/admin/people", params={"email": PERSON})).json() == {"erased": 2}
    assert (await mod.delete("/api/admin/people", params={"email": PERSON})).json() == {"erased": 0}


# ---- the audit log -------------------------------------------------------------------------


async def test_every_moderator_action_is_in_the_audit_log(
    readers: Readers, mod: httpx.AsyncClient, clients: Clients, service: Any,
) -> None:
    a, b, c, d = [await readers.leave(OTHER, body=f"Audit {n}.") for n in range(4)]
    e = await readers.leave(PERSON)
    await approve(mod, a["id"])                                                    # status
    assert (await mod.patch(f"/api/admin/comments/{a['id']}", json={
        "body": "Edited.", "author": "New Name", "url": "https://new.example/"})).status_code == 200
    r = await mod.post("/api/admin/comments/bulk", json={"ids": [b["id"], c["id"]], "status": "spam"})
    assert r.status_code == 200
    assert (await mod.delete(f"/api/admin/comments/{d['id']}")).status_code == 204
    await put_rules(mod, moderation_words=["casino"])
    assert (await mod.patch("/api/admin/pages", params={"page": PAGE}, json={"closed": True})).status_code == 200
    assert (await mod.patch("/api/admin/pages", params={"page": PAGE}, json={"closed": False})).status_code == 200
    assert (await mod.get("/api/admin/people", params={"email": PERSON})).status_code == 200
    assert (await mod.delete("/api/admin/people", params={"email": PERSON})).status_code == 200
    store.create_token(service.db, "alice", store.utcnow())
    assert store.revoke_token(service.db, "alice", store.utcnow())
    author = clients.client()
    r = await author.patch(f"/api/comments/{e['id']}", headers={"X-Edit-Token": e["edit_token"]},
                           json={"body": "The author's own edit."})
    assert r.status_code == 200

    items = await audit(mod)
    for item in items:
        assert set(item) == AUDIT_FIELDS and item["created_at"].endswith("Z")
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)  # newest first
    actions = {i["action"] for i in items}
    assert {"status", "edit_body", "edit_author", "edit_url", "delete", "rules", "close", "open", "export",
            "erase", "token_create", "token_revoke", "author_edit"} <= actions, actions
    seen = {(i["action"], i["comment_id"], i["from"], i["to"]) for i in items}
    assert ("status", a["id"], "pending", "approved") in seen
    assert ("status", b["id"], "pending", "spam") in seen and ("status", c["id"], "pending", "spam") in seen
    assert ("edit_author", a["id"], "Someone", "New Name") in seen
    assert ("edit_url", a["id"], "https://someone.example/", "https://new.example/") in seen
    assert ("delete", d["id"], "pending", None) in seen
    assert ("close", None, PAGE, "true") in seen and ("open", None, PAGE, "false") in seen
    assert ("token_create", None, None, "alice") in seen and ("token_revoke", None, "alice", None) in seen
    actors = {i["action"]: i["actor"] for i in items}
    assert actors["status"] == actors["rules"] == actors["erase"] == "moderator"
    assert actors["token_create"] == "cli" and actors["author_edit"] == "author"
    for item in items:
        assert mentions(item["from"], PERSON) == [] and mentions(item["to"], PERSON) == [], item


async def test_audit_filters(readers: Readers, mod: httpx.AsyncClient, service: Any) -> None:
    now = store.utcnow()
    one, two = await readers.leave(OTHER, body="First."), await readers.leave(OTHER, body="Second.")
    await approve(mod, one["id"])
    await approve(mod, two["id"])
    assert (await mod.patch(f"/api/admin/comments/{one['id']}", json={"status": "trash"})).status_code == 200
    store.create_token(service.db, "ancient", now - timedelta(days=10))
    store.put_rules(service.db, store.get_rules(service.db), "alice", now - timedelta(days=5))
    store.set_closed(service.db, "/old/", True, "bob", now - timedelta(days=1))

    assert {i["actor"] for i in await audit(mod, actor="alice")} == {"alice"}
    assert [i["action"] for i in await audit(mod, actor="bob")] == ["close"]
    assert {i["action"] for i in await audit(mod, action="status")} == {"status"}
    assert [(i["from"], i["to"]) for i in await audit(mod, comment=str(one["id"]))] == [
        ("approved", "trash"), ("pending", "approved")]
    assert [i["action"] for i in await audit(mod, comment=str(two["id"]), action="status")] == ["status"]
    assert await audit(mod, actor="nobody") == []
    assert await audit(mod, comment="999999") == []

    def stamp(moment: Any, offset: str = "Z") -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + offset

    window = await audit(mod, since=stamp(now - timedelta(days=6)), until=stamp(now - timedelta(days=2)))
    assert [(i["actor"], i["action"]) for i in window] == [("alice", "rules")]
    older = await audit(mod, until=stamp(now - timedelta(days=6)))
    assert [(i["action"], i["to"]) for i in older] == [("token_create", "ancient")]
    # the same moment written with an offset: 2 hours ahead of UTC
    shifted = now - timedelta(days=6) + timedelta(hours=2)
    assert await audit(mod, until=stamp(shifted, "+02:00")) == older
    recent = await audit(mod, since=stamp(now - timedelta(hours=1)))
    assert {(i["actor"], i["action"]) for i in recent} == {
        ("cli", "token_create"), ("moderator", "rules"), ("moderator", "status")}  # the fixtures' and ours
    assert await audit(mod, since=stamp(now + timedelta(days=1))) == []


async def test_audit_paging_newest_first(readers: Readers, mod: httpx.AsyncClient, service: Any) -> None:
    for n in range(7):
        store.set_closed(service.db, f"/paged/{n}/", True, "pager", store.utcnow())
    everything = await audit(mod, actor="pager")
    assert len(everything) == 7
    collected: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"actor": "pager", "limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await mod.get("/api/admin/audit", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 3
        collected += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert collected == everything
    assert [i["from"] for i in collected] == [f"/paged/{n}/" for n in reversed(range(7))]
    r = await mod.get("/api/admin/audit", params={"actor": "pager", "limit": 7})
    assert r.json()["next"] is None


async def test_audit_bad_query_is_422_and_a_bad_cursor_400(mod: httpx.AsyncClient) -> None:
    for params in [{"since": "yesterday"}, {"until": "2026-13-01T00:00:00Z"}, {"since": ""}, {"comment": "abc"},
                   {"comment": "0"}, {"comment": "-3"}, {"limit": "0"}, {"limit": "201"}, {"limit": "many"},
                   {"actor": "x" * 101}, {"action": "y" * 101}]:
        r = await mod.get("/api/admin/audit", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    for cursor in ["garbage", "bm9wZQ.bm9wZQ", "", "a.b.c"]:
        r = await mod.get("/api/admin/audit", params={"cursor": cursor})
        assert r.status_code == 400, (cursor, r.text)
        assert r.json()["error"]["code"] == "bad_request"


async def test_the_audit_log_is_read_only(mod: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = await mod.request(method, "/api/admin/audit")
        assert r.status_code == 405, (method, r.status_code)
