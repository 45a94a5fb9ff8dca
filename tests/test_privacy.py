"""The email stays private by construction: no public answer, success or error, carries the
address, a form of it, an unsalted hash of it, or an encoding of it; the moderators' view does."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import sqlalchemy as sa
from conftest import TEST_EMAIL_KEY

from comments.crypto import Keyring, parse_keys

from comments.forms import normalise_email

from conftest import Clients, approve

PRIVATE = "Priv.Acy+Tag@Example.COM"
PLAIN = "plain.reader@example.net"
ADDRESSES = [PRIVATE, PLAIN]
USER_AGENT = "PrivacyProbe/1.0 (distinctive-agent-string)"
PAGE = "/2026/privacy/"
ORIGIN = "https://blog.example"
PUBLIC_FIELDS = {"id", "parent", "author", "url", "body_html", "created_at", "replies"}
ON_CREATE = {"status", "edit_token"}
RULES = {"moderation": "all", "moderation_words": [], "blocked_words": [], "max_links": 2,
         "auto_approve_known_authors": False, "flood_seconds": 0, "edit_window_seconds": 900,
         "spam_threshold": 0.5, "hold_threshold": 0.2}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"site_origins": (ORIGIN,), "demo": True, "rate_limit": "3/minute"}


def _digests(text: str) -> list[str]:
    data = text.encode("utf-8")
    return [hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(),  # noqa: S324
            hashlib.sha256(data).hexdigest()]


def _encodings(text: str) -> list[bytes]:
    data = text.encode("utf-8")
    std, url = base64.b64encode(data), base64.urlsafe_b64encode(data)
    return [std, url, std.rstrip(b"="), url.rstrip(b"=")]


def address_forms(address: str) -> set[str]:
    """The address as typed, lower-cased, case-folded and normalised."""
    forms = {address, address.lower(), address.casefold(), address.strip()}
    normalised = normalise_email(address)
    forms |= {normalised, normalised.lower()}
    return forms


@dataclass
class Forbidden:
    """What must never appear in a public answer."""

    texts: set[str] = field(default_factory=set)  # matched without regard to case
    exact: set[bytes] = field(default_factory=set)  # matched byte for byte

    @classmethod
    def for_addresses(cls, addresses: list[str]) -> Forbidden:
        found = cls()
        for address in addresses:
            for form in address_forms(address):
                found.texts |= {form, quote(form, safe=""), quote_plus(form), quote(form)}
                found.texts |= set(_digests(form))
                found.exact |= set(_encodings(form))
        local = PRIVATE.split("@")[0]
        found.texts |= {local, quote(local, safe="")}
        return found

    def leaks(self, blob: bytes) -> list[str]:
        low = blob.lower()
        hits = [t for t in self.texts if t.lower().encode("utf-8") in low]
        hits += [e.decode() for e in self.exact if e in blob]
        return hits


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    raw: bytes
    headers: httpx.Headers
    content: bytes


class Recorder:
    """Every public response: status line, headers and body bytes."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.exchanges: list[Exchange] = []

    def client(self, ip: str | None = None) -> httpx.AsyncClient:
        client = self.clients.client(ip)
        client.headers["User-Agent"] = USER_AGENT
        client.event_hooks["response"] = [self._record]
        return client

    async def _record(self, response: httpx.Response) -> None:
        await response.aread()
        head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n".encode()
        head += b"".join(k + b": " + v + b"\r\n" for k, v in response.headers.raw)
        self.exchanges.append(Exchange(response.request.method, str(response.request.url), response.status_code,
                                       head + b"\r\n" + response.content, response.headers, response.content))


def b64_pieces(blob: bytes) -> list[bytes]:
    """Every base64 / base64url-looking run in blob, decoded (at each alignment)."""
    decoded = []
    for match in re.finditer(rb"[A-Za-z0-9_\-+/]{8,}={0,2}", blob):
        token = match.group().rstrip(b"=")
        for start in range(4):
            piece = token[start:]
            piece = piece[: len(piece) - len(piece) % 4] if len(piece) % 4 == 1 else piece
            padded = piece + b"=" * (-len(piece) % 4)
            for decode in (base64.urlsafe_b64decode, base64.b64decode):
                try:
                    decoded.append(decode(padded))
                except ValueError:
                    pass
    return decoded


def unsigned_payload(opaque: str) -> Any:
    """The JSON inside one of the service's signed strings (body.mac)."""
    body = opaque.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def public_shape(item: dict[str, Any], extra: frozenset[str] = frozenset()) -> None:
    """Only the public fields (plus `extra`), in the comment and in every reply."""
    assert set(item) <= PUBLIC_FIELDS | extra, sorted(set(item) - PUBLIC_FIELDS - extra)
    for reply in item.get("replies", []):
        public_shape(reply)


async def walk_public_endpoints(clients: Clients, mod: httpx.AsyncClient, rec: Recorder) -> dict[str, Any]:
    """Use every public endpoint, with the recognisable addresses in play; return what the
    checks need (ids, tokens, cursors, ETags)."""
    seen: dict[str, Any] = {"cursors": [], "etags": [], "ids": {}}
    assert (await mod.put("/api/admin/rules", json=RULES)).status_code == 200

    def fields(email: str, body: str, **extra: Any) -> dict[str, Any]:
        return {"page": PAGE, "author": "Privacy Tester", "email": email, "body": body,
                "url": "https://tester.example/", **extra}

    # --- leave a reply: JSON, form-urlencoded, multipart (WordPress names), all with the addresses
    r = await rec.client().post("/api/comments", json=fields(PRIVATE, "Top-level one, sent as JSON."))
    assert r.status_code == 202, r.text
    public_shape(r.json(), frozenset(ON_CREATE))
    top_private = r.json()
    r = await rec.client().post("/api/comments", json=fields(PLAIN, "Top-level two, by the plain reader."))
    assert r.status_code == 202, r.text
    top_plain = r.json()
    r = await rec.client().post("/api/comments", data=fields(PRIVATE.lower(), "Sent as a urlencoded form."))
    assert r.status_code == 202, r.text
    form_private = r.json()
    r = await rec.client().post(
        "/api/comments",
        files={"comment_post_ID": (None, PAGE), "comment": (None, "Sent as multipart with WordPress names."),
               "author": (None, "Privacy Tester"), "email": (None, f"  {PRIVATE}  "), "comment_parent": (None, "0")},
    )
    assert r.status_code == 202, r.text
    multipart_private = r.json()
    r = await rec.client().post("/api/comments", json=fields("third@example.org", "Top-level three, someone else."))
    assert r.status_code == 202, r.text
    top_third = r.json()

    # the form post that wants HTML comes back through a 303, to redirect_to or the Referer
    html = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
    r = await rec.client().post("/api/comments", headers=html, data={
        **fields(PRIVATE, "Posted from the no-JavaScript form."), "redirect_to": f"{ORIGIN}{PAGE}#respond"})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"{ORIGIN}{PAGE}#comment-")
    r = await rec.client().post("/api/comments", headers={**html, "Referer": f"{ORIGIN}{PAGE}?x=1"},
                                data=fields(PLAIN, "Posted from the form, back by the Referer."))
    assert r.status_code == 303, r.text
    r = await rec.client().post("/api/comments", headers=html, data={
        **fields(PRIVATE, "A form post with a foreign redirect target."), "redirect_to": "https://evil.example/"})
    assert r.status_code == 202, r.text

    # one published at once: 201
    assert (await mod.put("/api/admin/rules", json={**RULES, "moderation": "rules"})).status_code == 200
    r = await rec.client().post("/api/comments", json=fields(PRIVATE, "Published at once under the rules mode."))
    assert r.status_code == 201, r.text
    public_shape(r.json(), frozenset(ON_CREATE))
    published = r.json()
    assert (await mod.put("/api/admin/rules", json=RULES)).status_code == 200

    # --- every error answer of POST /api/comments, each with the address in the request
    async def refused(status: int, **kwargs: Any) -> httpx.Response:
        response = await rec.client().post("/api/comments", **kwargs)
        assert response.status_code == status, (status, response.text)
        return response

    await refused(422, json=fields(PRIVATE, ""))
    await refused(422, json=fields(PRIVATE, "Bad website.", url="javascript:alert(1)"))
    await refused(422, json=fields(f"{PRIVATE} x", "A broken address with the real one inside."))
    await refused(422, json=fields(f"{PRIVATE}@", "Another broken address."))
    await refused(422, json=fields(PRIVATE, "x" * 10_001))
    await refused(422, json=fields(PRIVATE, "Reply to nothing.", parent=987654))
    await refused(422, json=fields(PRIVATE, "Reply to a pending comment.", parent=form_private["id"]))
    await refused(422, json={"email": PRIVATE})
    await refused(422, data={"email": PRIVATE, "comment": "no page"})
    await refused(409, json=fields(PRIVATE, "Top-level one, sent as JSON."))
    await refused(409, json=fields(PRIVATE.upper(), "top-level ONE,   sent as json."))
    await refused(400, content=b'{"email": "' + PRIVATE.encode() + b'", ', headers={"Content-Type": "application/json"})
    await refused(400, content=json.dumps([PRIVATE]).encode(), headers={"Content-Type": "application/json"})
    await refused(400, content=b'{"email": "' + PRIVATE.encode() + b'", "body": "\xff\xfe"}',
                  headers={"Content-Type": "application/json"})
    await refused(400, files={"email": ("upload.txt", PRIVATE.encode(), "text/plain"), "page": (None, PAGE)})
    await refused(413, json=fields(PRIVATE, "y" * 70_000))
    await refused(415, content=f"email={PRIVATE}".encode(), headers={"Content-Type": "text/plain"})
    await refused(415, content=PRIVATE.encode())
    mod_closed = await mod.patch("/api/admin/pages", params={"page": "/closed/"}, json={"closed": True})
    assert mod_closed.status_code == 200
    await refused(403, json={**fields(PRIVATE, "On a closed page."), "page": "/closed/"})

    # the rate limit (3 a minute from one address) and the flood rule (one address, one email)
    same = rec.client("203.0.113.77")
    for n in range(3):
        r = await same.post("/api/comments", json=fields(f"rate{n}@example.org", f"Rate limit probe {n}."))
        assert r.status_code == 202, r.text
    r = await same.post("/api/comments", json=fields(PRIVATE, "Over the rate limit."))
    assert r.status_code == 429 and "retry-after" in r.headers
    assert (await mod.put("/api/admin/rules", json={**RULES, "flood_seconds": 60})).status_code == 200
    r = await rec.client().post("/api/comments", json=fields(PRIVATE, "Too quick after the last one."))
    assert r.status_code == 429, r.text
    flood = rec.client()
    r = await flood.post("/api/comments", json=fields("flood@example.org", "First from this address."))
    assert r.status_code == 202, r.text
    r = await flood.post("/api/comments", json=fields(PLAIN, "Second from this address too soon."))
    assert r.status_code == 429, r.text
    assert (await mod.put("/api/admin/rules", json=RULES)).status_code == 200

    # --- approve, reply, edit, delete
    for comment_id in (top_private["id"], top_plain["id"], top_third["id"], multipart_private["id"]):
        await approve(mod, comment_id)
    r = await rec.client().post("/api/comments", json=fields(PLAIN, "A reply to the private one.",
                                                             parent=top_private["id"]))
    assert r.status_code == 202, r.text
    reply_plain = r.json()
    r = await rec.client().post("/api/comments", data=fields(PRIVATE, "A private reply to the plain one.",
                                                             comment_parent=str(top_plain["id"])))
    assert r.status_code == 202, r.text
    reply_private = r.json()
    await approve(mod, reply_plain["id"])
    await approve(mod, reply_private["id"])
    r = await rec.client().post("/api/comments", json=fields(PRIVATE, "A reply to the reply.",
                                                             parent=reply_plain["id"]))
    assert r.status_code == 202, r.text
    await approve(mod, r.json()["id"])

    author = rec.client()
    token = {"X-Edit-Token": form_private["edit_token"]}
    r = await author.get(f"/api/comments/{form_private['id']}", headers=token)
    assert r.status_code == 200, r.text
    r = await author.get(f"/api/comments/{form_private['id']}")
    assert r.status_code == 404
    r = await author.get(f"/api/comments/{form_private['id']}", headers={"X-Edit-Token": top_plain["edit_token"]})
    assert r.status_code == 403
    r = await author.patch(f"/api/comments/{form_private['id']}", headers=token,
                           json={"body": "Edited by its author, still pending."})
    assert r.status_code == 200, r.text
    r = await author.patch(f"/api/comments/{form_private['id']}", headers=token,
                           data={"body": "Edited again, as a form."})
    assert r.status_code == 200, r.text
    r = await author.patch(f"/api/comments/{form_private['id']}", headers={"X-Edit-Token": "wrong"},
                           json={"body": "Not mine."})
    assert r.status_code == 403
    r = await author.patch(f"/api/comments/{form_private['id']}", headers=token, json={"status": "approved"})
    assert r.status_code == 422
    r = await author.patch(f"/api/comments/{form_private['id']}", headers=token, json={"body": ""})
    assert r.status_code == 422
    r = await author.patch(f"/api/comments/{form_private['id']}", headers={**token, "Content-Type": "application/json"},
                           content=b'{"body": "' + PRIVATE.encode() + b'", ')
    assert r.status_code == 400
    r = await author.patch(f"/api/comments/{form_private['id']}", headers={**token, "Content-Type": "text/plain"},
                           content=PRIVATE.encode())
    assert r.status_code == 415
    # an approved comment edited by its author (it goes back to the queue)
    r = await author.patch(f"/api/comments/{multipart_private['id']}",
                           headers={"X-Edit-Token": multipart_private["edit_token"]},
                           json={"body": "The multipart one, edited after approval."})
    assert r.status_code == 200, r.text
    r = await author.get(f"/api/comments/{top_private['id']}", headers={"X-Edit-Token": top_private["edit_token"]})
    assert r.status_code == 200
    r = await author.get(f"/api/comments/{top_private['id']}")
    assert r.status_code == 200
    public_shape(r.json())
    r = await author.get(f"/api/comments/{published['id']}")
    assert r.status_code == 200
    r = await author.delete(f"/api/comments/{published['id']}", headers={"X-Edit-Token": "x" * 43})
    assert r.status_code == 403
    r = await author.delete(f"/api/comments/{published['id']}", headers={"X-Edit-Token": published["edit_token"]})
    assert r.status_code == 204
    r = await author.get(f"/api/comments/{published['id']}", headers={"X-Edit-Token": published["edit_token"]})
    assert r.status_code == 404
    r = await author.delete(f"/api/comments/{published['id']}", headers={"X-Edit-Token": published["edit_token"]})
    assert r.status_code == 404

    # --- the thread, paged so that cursors appear, and its ETags
    reader = rec.client()
    for limit in ("1", "2", "50"):
        cursor = None
        pages = 0
        while True:
            params = {"page": PAGE, "limit": limit, **({"cursor": cursor} if cursor else {})}
            r = await reader.get("/api/comments", params=params)
            assert r.status_code == 200, r.text
            data = r.json()
            for item in data["comments"]:
                public_shape(item)
            seen["etags"].append(r.headers["etag"])
            again = await reader.get("/api/comments", params=params, headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304
            weak = await reader.get("/api/comments", params=params,
                                    headers={"If-None-Match": f'"nope", W/{r.headers["etag"]}'})
            assert weak.status_code == 304
            pages += 1
            cursor = data["next"]
            if not cursor:
                break
            seen["cursors"].append(cursor)
        assert pages == (3 if limit == "1" else 2 if limit == "2" else 1)
    r = await reader.get("/api/comments", params={"page": PAGE, "cursor": "bm9wZQ.bm9wZQ"})
    assert r.status_code == 400
    r = await reader.get("/api/comments", params={"page": PAGE, "limit": "0"})
    assert r.status_code == 422
    r = await reader.get("/api/comments")
    assert r.status_code == 422
    r = await reader.get("/api/comments", params={"page": "/nobody/"})
    assert r.status_code == 200 and r.json()["total"] == 0

    # --- everything else a reader can reach
    for path, params, status in [
        ("/api/counts", [("page", PAGE), ("page", "/closed/"), ("page", "/nobody/")], 200),
        ("/api/counts", [], 200),
        ("/healthz", [], 200),
        (f"/api/comments/{top_plain['id']}", [], 200),
        (f"/api/comments/{reply_private['id']}", [], 200),
        (f"/api/comments/{form_private['id']}", [], 404),
        ("/api/comments/0", [], 404),
        ("/api/comments/abc", [], 404),
        ("/api/comments/99999999", [], 404),
        ("/nope", [], 404),
        ("/api/nope", [], 404),
        ("/embed.js", [], 200),
        ("/embed.css", [], 200),
        ("/demo.css", [], 200),
        ("/embed/form", [("page", PAGE), ("redirect", f"{ORIGIN}{PAGE}")], 200),
        ("/embed/form", [("page", PAGE), ("parent", str(top_private["id"]))], 200),
        ("/embed/form", [], 422),
        ("/demo", [], 200),
        ("/api/admin/comments", [], 401),
        (f"/api/admin/comments/{top_private['id']}", [], 401),
    ]:
        r = await reader.get(path, params=params)
        assert r.status_code == status, (path, r.status_code, r.text)
    counts = (await reader.get("/api/counts", params={"page": PAGE})).json()
    assert counts[PAGE] == 6
    assert (await reader.get(f"/api/comments/{reply_private['id']}")).json()["parent"] == top_plain["id"]
    for method, path in [("PUT", "/api/comments"), ("DELETE", "/api/comments"), ("POST", "/healthz"),
                         ("POST", "/api/counts"), ("POST", f"/api/comments/{top_private['id']}"),
                         ("POST", "/embed.js"), ("PUT", "/api/comments/1")]:
        r = await reader.request(method, path, json={"email": PRIVATE})
        assert r.status_code == 405, (method, path, r.status_code)
    r = await reader.head("/embed.js")
    assert r.status_code == 200
    r = await reader.options("/api/comments", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 200
    r = await reader.get("/api/comments", params={"page": PAGE}, headers={"Origin": ORIGIN})
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    r = await reader.post("/api/admin/comments/bulk", json={"ids": [1], "status": "approved"},
                          headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401

    seen["ids"] = {"top_private": top_private["id"], "form_private": form_private["id"]}
    return seen


async def test_no_public_answer_reveals_the_email(clients: Clients, mod: httpx.AsyncClient,
                                                  database_url: str) -> None:
    rec = Recorder(clients)
    seen = await walk_public_endpoints(clients, mod, rec)

    statuses = {e.status for e in rec.exchanges}
    assert {200, 201, 202, 204, 303, 304, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429} <= statuses
    assert len(rec.exchanges) > 100

    # everything the database holds about the posters, besides the fixed forms of the addresses
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT email, email_key, ip, user_agent FROM comment")).all()
    finally:
        engine.dispose()
    ring = Keyring(tuple(parse_keys(TEST_EMAIL_KEY, "test key")))
    stored_emails = {ring.decrypt(row.email) for row in rows}
    assert all(row.email.startswith("e1.") for row in rows)  # encrypted at rest
    assert normalise_email(PRIVATE) in stored_emails and PLAIN in stored_emails
    forbidden = Forbidden.for_addresses(ADDRESSES + sorted(stored_emails))
    forbidden.texts |= {row.email for row in rows}
    forbidden.texts |= {row.email_key for row in rows}
    forbidden.texts |= {row.ip for row in rows if row.ip} | {USER_AGENT}
    for key in {row.email_key for row in rows}:
        forbidden.exact |= set(_encodings(key))

    leaks = []
    for exchange in rec.exchanges:
        hits = forbidden.leaks(exchange.raw)
        for piece in b64_pieces(exchange.raw):
            hits += [f"base64 of {t}" for t in forbidden.leaks(piece) if "@" in t or "%40" in t]
        if hits:
            leaks.append(f"{exchange.method} {exchange.url} -> {exchange.status}: {sorted(set(hits))[:5]}")
    assert leaks == []

    # the opaque strings decode to something, and that something is not the address
    assert seen["cursors"] and seen["etags"]
    for cursor in seen["cursors"]:
        payload = unsigned_payload(cursor)
        assert isinstance(payload, list) and payload, payload
        assert not forbidden.leaks(json.dumps(payload).encode())
        for piece in cursor.split("."):
            raw = base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4))
            assert not forbidden.leaks(raw)
    for etag in seen["etags"]:
        value = etag.strip('W/"')
        assert not forbidden.leaks(value.encode())
        for piece in b64_pieces(value.encode()):
            assert not forbidden.leaks(piece)

    # not vacuous: the moderators' full view does carry the address
    r = await mod.get(f"/api/admin/comments/{seen['ids']['top_private']}")
    assert r.status_code == 200
    assert r.json()["email"] == normalise_email(PRIVATE)
    assert forbidden.leaks(r.content)
    r = await mod.get("/api/admin/comments", params={"status": "pending", "q": PRIVATE})
    assert r.status_code == 200
    assert any(item["email"] == normalise_email(PRIVATE) for item in r.json()["items"])
    assert forbidden.leaks(r.content)


def test_the_forbidden_forms_are_recognised() -> None:
    forbidden = Forbidden.for_addresses(ADDRESSES)
    normalised = normalise_email(PRIVATE)
    assert normalised != PRIVATE  # the domain is lower-cased
    for form in [PRIVATE, PRIVATE.lower(), normalised, PLAIN]:
        assert forbidden.leaks(f'{{"x": "{form}"}}'.encode())
        for digest in _digests(form):
            assert forbidden.leaks(digest.encode())
            assert forbidden.leaks(digest.upper().encode())
        for encoded in _encodings(form):
            assert forbidden.leaks(b"a " + encoded + b" b")
            assert any(forbidden.leaks(piece) for piece in b64_pieces(b"x=" + encoded + b";"))
    gravatar = hashlib.md5(PRIVATE.strip().lower().encode()).hexdigest()  # noqa: S324
    assert forbidden.leaks(f"https://www.gravatar.com/avatar/{gravatar}".encode())
    assert forbidden.leaks(quote(PRIVATE, safe="").encode())
    assert not forbidden.leaks(b'{"author": "Privacy Tester", "body_html": "<p>hello</p>"}')
