"""The moderators' web page through the real app: sign-in and sessions, CSRF, every action, conflicts,
the queue's content and escaping, rules, pages, tokens and the security headers."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from comments import adminsession, store
from comments.security import token_hash
from comments.store import logins
from comments.store.common import action_t, rate_t
from comments.store.tokens import token_by_hash
from conftest import Clients, approve, post

ORIGIN = "https://blog.example"
JSON = {"Accept": "application/json"}
MOD_IP = "192.0.2.240"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"site_origins": (ORIGIN,)}


class Moderator:
    """A browser-like client signed in to /admin, with the page's CSRF token."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def act(self, comment_id: int, action: str, seen: str | None = None, *, plain: bool = False,
                  **fields: str) -> httpx.Response:
        data = {"csrf": self.csrf, "action": action, **fields}
        if seen:
            data["from_status"] = seen
        return await self.client.post(f"/admin/comments/{comment_id}", data=data, headers={} if plain else JSON)

    async def bulk(self, ids: list[int], action: str, seen: str | None = None, **fields: str) -> httpx.Response:
        data: dict[str, Any] = {"csrf": self.csrf, "action": action, "ids": [str(i) for i in ids], **fields}
        if seen:
            data["from_status"] = seen
        return await self.client.post("/admin/bulk", data=data, headers=JSON)


def csrf_in(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(clients: Clients, token: str, ip: str = MOD_IP, base: str = "http://testserver") -> Moderator:
    client = clients.client(ip)
    client.base_url = httpx.URL(base)
    answer = await client.post("/admin/signin", data={"token": token})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin"
    page = await client.get("/admin")
    assert page.status_code == 200
    return Moderator(client, csrf_in(page.text))


@pytest.fixture
async def moderator(clients: Clients, token: str) -> Moderator:
    return await sign_in(clients, token)


async def status_of(service: Any, comment_id: int) -> str | None:
    try:
        return str(store.get_full(service.db, comment_id)["status"])
    except Exception:  # noqa: BLE001 - gone for good
        return None


def cookie_header(response: httpx.Response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert found, f"no {name} cookie set"
    return found[-1]


# ---- headers and sign-in --------------------------------------------------------------------


def assert_page_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def assert_no_inline_code(text: str) -> None:
    """No inline script, style or event handler, and no javascript: link (by the parsed markup)."""
    parser = _Tags()
    parser.feed(text)
    for tag, attrs in parser.found:
        assert tag != "style" and "style" not in attrs, tag
        assert tag != "script" or attrs.get("src"), "inline script"
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src", "action"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), attrs


async def test_signin_page_headers_and_no_inline_code(clients: Clients) -> None:
    answer = await clients.client().get("/admin/signin")
    assert answer.status_code == 200
    assert_page_headers(answer)
    assert_no_inline_code(answer.text)
    assert 'name="token"' in answer.text and 'type="password"' in answer.text


async def test_pages_need_a_session(clients: Clients, service: Any) -> None:
    anonymous = clients.client()
    comment_id = (await post(clients)).json()["id"]
    answer = await anonymous.get("/admin")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/signin"
    assert (await anonymous.get("/admin/settings")).status_code == 303
    refused = await anonymous.post(f"/admin/comments/{comment_id}", data={"action": "approve"}, headers=JSON)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    plain = await anonymous.post(f"/admin/comments/{comment_id}", data={"action": "approve"})
    assert plain.status_code == 303 and plain.headers["location"] == "/admin/signin"
    assert await status_of(service, comment_id) == "pending"


async def test_sign_in_gives_a_strict_cookie_and_sign_out_ends_it(clients: Clients, token: str) -> None:
    client = clients.client(MOD_IP)
    answer = await client.post("/admin/signin", data={"token": f"  {token}\n"})
    assert answer.status_code == 303
    cookie = cookie_header(answer, adminsession.COOKIE).lower()
    for part in ("httponly", "samesite=strict", "path=/admin", f"max-age={adminsession.SESSION_MINUTES * 60}"):
        assert part in cookie
    assert "secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert token not in cookie
    page = await client.get("/admin")
    assert page.status_code == 200 and "Signed in as" in page.text and "moderator" in page.text
    assert_page_headers(page)
    assert (await client.get("/admin/signin")).headers["location"] == "/admin"
    csrf = csrf_in(page.text)
    assert (await client.post("/admin/signout", data={})).status_code == 403
    out = await client.post("/admin/signout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/admin/signin?ended=signed-out"
    assert "max-age=0" in cookie_header(out, adminsession.COOKIE).lower()
    again = await client.get("/admin")
    assert again.status_code == 303
    assert "You are signed out." in (await client.get("/admin/signin?ended=signed-out")).text


async def test_cookie_is_secure_over_https(clients: Clients, token: str) -> None:
    client = clients.client(MOD_IP)
    client.base_url = httpx.URL("https://testserver")
    answer = await client.post("/admin/signin", data={"token": token})
    assert "secure" in cookie_header(answer, adminsession.COOKIE).lower()


class TestBehindTrustedProxy:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"trusted_proxies": "192.0.2.0/24"}

    async def test_forwarded_https_makes_the_cookie_secure(self, clients: Clients, token: str) -> None:
        proxied = await clients.client("192.0.2.9").post(
            "/admin/signin", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
        assert "secure" in cookie_header(proxied, adminsession.COOKIE).lower()
        untrusted = await clients.client("198.51.100.9").post(
            "/admin/signin", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in cookie_header(untrusted, adminsession.COOKIE).lower()


async def test_failed_sign_ins_look_alike_and_are_rate_limited(clients: Clients, token: str) -> None:
    client = clients.client("198.51.100.50")
    texts = set()
    for wrong in ("", "nope", token + "x", token[:-1], "x" * 500):
        answer = await client.post("/admin/signin", data={"token": wrong})
        assert answer.status_code == 401
        assert "That token was not accepted." in answer.text
        texts.add(answer.text)
        assert adminsession.COOKIE not in answer.headers.get("set-cookie", "")
    assert len(texts) == 1  # never a hint which part was wrong
    limited = await client.post("/admin/signin", data={"token": token})  # even the right one waits now
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= adminsession.LOGIN_WINDOW_SECONDS
    assert "Too many failed sign-ins" in limited.text
    assert (await clients.client("198.51.100.51").post("/admin/signin", data={"token": token})).status_code == 303


async def test_cross_site_posts_are_refused(clients: Clients, token: str, moderator: Moderator, service: Any) -> None:
    comment_id = (await post(clients)).json()["id"]
    answer = await moderator.client.post(f"/admin/comments/{comment_id}", headers={"Sec-Fetch-Site": "cross-site"},
                                         data={"csrf": moderator.csrf, "action": "approve"})
    assert answer.status_code == 403
    signin = await clients.client().post("/admin/signin", data={"token": token},
                                         headers={"Sec-Fetch-Site": "cross-site"})
    assert signin.status_code == 403
    assert await status_of(service, comment_id) == "pending"


# ---- sessions: expiry, revocation, tampering, CSRF --------------------------------------------


def session_cookie(service: Any, token: str, issued_ago: timedelta, active_ago: timedelta) -> str:
    now = store.utcnow()
    row = token_by_hash(service.db, token_hash(token), now)
    assert row is not None
    session = adminsession.new_session(row, now - issued_ago)
    session = adminsession.Session(session.token_id, session.digest, session.nonce, session.issued,
                                   adminsession.epoch(now - active_ago))
    return adminsession.encode(service.keys, session)


async def test_session_slides_then_expires_after_inactivity(clients: Clients, token: str, service: Any) -> None:
    minutes = adminsession.SESSION_MINUTES
    fresh = clients.client()
    fresh.cookies.set(adminsession.COOKIE, session_cookie(service, token, timedelta(hours=1),
                                                          timedelta(minutes=minutes - 1)), path="/admin")
    answer = await fresh.get("/admin")
    assert answer.status_code == 200
    value = cookie_header(answer, adminsession.COOKIE).split(";")[0].split("=", 1)[1]
    renewed = adminsession.decode(service.keys, value)
    assert renewed is not None and abs(renewed.active - adminsession.epoch(store.utcnow())) < 5

    stale = clients.client()
    stale.cookies.set(adminsession.COOKIE, session_cookie(service, token, timedelta(hours=1),
                                                          timedelta(minutes=minutes + 1)), path="/admin")
    answer = await stale.get("/admin")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/signin?ended=expired"
    assert "max-age=0" in cookie_header(answer, adminsession.COOKIE).lower()
    assert "after a while without activity" in (await stale.get("/admin/signin?ended=expired")).text
    json_answer = await stale.post("/admin/bulk", data={"ids": "1", "action": "approve"}, headers=JSON)
    assert json_answer.status_code == 401

    old = clients.client()
    old.cookies.set(adminsession.COOKIE, session_cookie(service, token, timedelta(hours=adminsession.SESSION_MAX_HOURS,
                                                                                   minutes=1),
                                                        timedelta(minutes=1)), path="/admin")
    assert (await old.get("/admin")).headers["location"] == "/admin/signin?ended=expired"


async def test_revoked_token_ends_the_session(clients: Clients, token: str, moderator: Moderator,
                                              service: Any) -> None:
    comment_id = (await post(clients)).json()["id"]
    store.revoke_token(service.db, "moderator", store.utcnow())
    store.create_token(service.db, "moderator", store.utcnow())  # same name, maybe the same row id: still dead
    answer = await moderator.act(comment_id, "approve", "pending", plain=True)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/signin?ended=revoked"
    assert (await moderator.act(comment_id, "approve", "pending")).status_code == 401
    assert await status_of(service, comment_id) == "pending"


async def test_tampered_cookie_is_refused(clients: Clients, moderator: Moderator, service: Any) -> None:
    value = moderator.client.cookies.get(adminsession.COOKIE)
    assert value
    body, mac = value.split(".")
    forged = adminsession.decode(service.keys, value)
    assert forged is not None
    for bad in (body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"), body[:-3] + "." + mac, "garbage",
                service.keys.sign("cursor", [forged.token_id, forged.digest, forged.nonce, forged.issued,
                                             forged.active])):
        client = clients.client()
        client.cookies.set(adminsession.COOKIE, bad, path="/admin")
        answer = await client.get("/admin")
        assert answer.headers["location"] == "/admin/signin?ended=invalid", bad


async def test_csrf_token_is_required_on_every_post(clients: Clients, token: str, moderator: Moderator,
                                                    service: Any) -> None:
    comment_id = (await post(clients)).json()["id"]
    other = await sign_in(clients, token, ip="192.0.2.241")
    assert other.csrf != moderator.csrf  # one per session
    posts = [(f"/admin/comments/{comment_id}", {"action": "approve"}),
             (f"/admin/comments/{comment_id}/edit", {"body": "changed"}),
             (f"/admin/comments/{comment_id}/reply", {"body": "hello"}),
             ("/admin/bulk", {"ids": str(comment_id), "action": "approve"}),
             ("/admin/rules", {"moderation": "rules"}),
             ("/admin/pages", {"page": "/p/1", "closed": "1"}),
             ("/admin/signout", {})]
    for path, data in posts:
        for csrf in (None, "", "forged", other.csrf):
            fields = dict(data) if csrf is None else {**data, "csrf": csrf}
            answer = await moderator.client.post(path, data=fields)
            assert answer.status_code == 403, (path, csrf)
            assert "security token is missing or wrong" in html.unescape(answer.text)
            assert_page_headers(answer)
        json_answer = await moderator.client.post(path, data=data, headers=JSON)
        assert json_answer.status_code == 403 and json_answer.json()["error"]["code"] == "forbidden"
    assert await status_of(service, comment_id) == "pending"
    assert (await moderator.client.get("/admin")).status_code == 200  # still signed in
    header = await moderator.client.post(f"/admin/comments/{comment_id}", data={"action": "approve"},
                                         headers={**JSON, "X-CSRF-Token": moderator.csrf})
    assert header.status_code == 200
    assert await status_of(service, comment_id) == "approved"


# ---- actions -------------------------------------------------------------------------------------


async def test_every_action_through_json(clients: Clients, moderator: Moderator, service: Any) -> None:
    comment_id = (await post(clients)).json()["id"]
    steps = [("approve", "pending", "approved"), ("unapprove", "approved", "pending"),
             ("spam", "pending", "spam"), ("notspam", "spam", "pending"),  # back to where it was
             ("approve", "pending", "approved"), ("spam", "approved", "spam"), ("notspam", "spam", "approved"),
             ("trash", "approved", "trash"), ("restore", "trash", "approved"), ("trash", "approved", "trash"),
             ("approve", "trash", "approved")]
    for action, seen, to in steps:
        answer = await moderator.act(comment_id, action, seen)
        assert answer.status_code == 200, (action, answer.text)
        data = answer.json()
        assert (data["from"], data["to"]) == (seen, to), action
        assert data["undo"] == [{"ids": [comment_id], "to": seen, "from_status": to}]
        assert await status_of(service, comment_id) == to
        assert answer.headers["cache-control"] == "no-store"
    undo = await moderator.bulk([comment_id], "status", "approved", to="trash")
    assert undo.json()["changed"] == [[comment_id, "approved", "trash"]]
    same = await moderator.act(comment_id, "trash", "trash")
    assert same.json()["undo"] == [] and "already" in same.json()["message"]


async def test_plain_post_redirects_back_with_a_message_and_an_undo_form(clients: Clients, moderator: Moderator,
                                                                         service: Any) -> None:
    comment_id = (await post(clients, page="/p/x")).json()["id"]
    answer = await moderator.act(comment_id, "approve", "pending", plain=True, back="status=pending&page=/p/x&evil=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin?status=pending&page=%2Fp%2Fx"
    assert await status_of(service, comment_id) == "approved"
    page = await moderator.client.get(answer.headers["location"])
    assert f"Approved: comment #{comment_id}." in page.text
    assert "max-age=0" in cookie_header(page, adminsession.FLASH_COOKIE).lower()  # shown once
    form = re.search(r'<form method="post" action="/admin/bulk" class="adm-undo">(.*?)</form>', page.text, re.S)
    assert form, "no Undo form"
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(1)))
    assert fields["to"] == "pending" and fields["from_status"] == "approved" and fields["ids"] == str(comment_id)
    undone = await moderator.client.post("/admin/bulk", data={**fields, "back": html.unescape(fields["back"])})
    assert undone.status_code == 303
    assert await status_of(service, comment_id) == "pending"


@pytest.mark.parametrize("start", ["spam", "trash"])
async def test_delete_for_good_asks_first(clients: Clients, moderator: Moderator, service: Any, start: str) -> None:
    parent = (await post(clients)).json()["id"]
    child_id = (await post(clients)).json()["id"]
    await moderator.act(parent, start, "pending")
    asked = await moderator.act(parent, "delete", start, plain=True, back=f"status={start}")
    assert asked.status_code == 200 and "Delete comment" in asked.text and 'name="confirm" value="yes"' in asked.text
    assert await status_of(service, parent) == start
    gone = await moderator.act(parent, "delete", start, plain=True, confirm="yes", back=f"status={start}")
    assert gone.status_code == 303 and gone.headers["location"] == f"/admin?status={start}"
    assert await status_of(service, parent) is None
    assert await status_of(service, child_id) == "pending"
    again = await moderator.act(parent, "delete", start, confirm="yes")
    assert again.status_code == 404
    assert f"Comment #{parent} does not exist" in again.json()["error"]["message"]


async def test_a_second_moderator_cannot_act_on_a_moved_comment(clients: Clients, moderator: Moderator,
                                                                service: Any) -> None:
    store.create_token(service.db, "second", store.utcnow())
    second_token = store.create_token(service.db, "third", store.utcnow())
    second = await sign_in(clients, second_token, ip="192.0.2.242")
    comment_id = (await post(clients)).json()["id"]
    assert (await moderator.act(comment_id, "approve", "pending")).status_code == 200
    late = await second.act(comment_id, "spam", "pending")
    assert late.status_code == 409
    error = late.json()["error"]
    assert error["current"] == "approved"
    assert "someone else already moved it to Approved. Nothing was changed." in error["message"]
    plain = await second.act(comment_id, "trash", "pending", plain=True)
    assert plain.status_code == 409 and "someone else already moved it" in plain.text
    deleting = await second.act(comment_id, "delete", "pending", confirm="yes")
    assert deleting.status_code == 409
    replying = await second.client.post(f"/admin/comments/{comment_id}/reply", headers=JSON,
                                        data={"csrf": second.csrf, "body": "Thanks!", "from_status": "pending"})
    assert replying.status_code == 409
    assert await status_of(service, comment_id) == "approved"
    with service.db.read() as conn:
        by_second = conn.execute(sa.select(action_t.c.action).where(action_t.c.actor == "third")).all()
    assert by_second == []


async def test_unknown_and_malformed_requests(moderator: Moderator) -> None:
    for path in ("/admin/comments/999999", "/admin/comments/999999/edit", "/admin/comments/999999/reply",
                 "/admin/comments/abc"):
        answer = await moderator.client.post(path, headers=JSON, data={"csrf": moderator.csrf, "action": "approve",
                                                                       "body": "x", "author": "x"})
        assert answer.status_code == 404, path
        assert "Nothing was changed" in answer.json()["error"]["message"]
    plain = await moderator.act(999999, "approve", "pending", plain=True)
    assert plain.status_code == 404 and "Comment #999999 does not exist" in plain.text
    assert_page_headers(plain)
    bad_action = await moderator.act(1, "explode", "pending")
    assert bad_action.status_code == 422 and "action" in bad_action.json()["error"]["fields"]
    bad_seen = await moderator.act(1, "approve", "limbo")
    assert bad_seen.status_code == 422
    bad_ids = await moderator.bulk([], "approve")
    assert bad_ids.status_code == 422
    not_a_form = await moderator.client.post("/admin/bulk", json={"csrf": moderator.csrf})
    assert not_a_form.status_code == 415
    assert (await moderator.client.get("/admin?status=limbo")).status_code == 422
    assert (await moderator.client.get("/admin?cursor=forged")).status_code == 400


async def test_bulk_changes_many_and_leaves_moved_and_missing_alone(clients: Clients, moderator: Moderator,
                                                                    service: Any) -> None:
    ids = [(await post(clients)).json()["id"] for _ in range(4)]
    await moderator.act(ids[3], "approve", "pending")
    answer = await moderator.bulk([*ids, 999999], "spam", "pending")
    assert answer.status_code == 200
    data = answer.json()
    assert data["changed"] == [[i, "pending", "spam"] for i in ids[:3]]
    assert data["moved"] == [[ids[3], "approved"]] and data["missing"] == [999999]
    assert data["message"] == ("Marked as spam: 3 comments. 1 had already been moved by someone else and were left "
                               "alone. 1 no longer exist.")
    assert data["undo"] == [{"ids": ids[:3], "to": "pending", "from_status": "spam"}]
    assert [await status_of(service, i) for i in ids] == ["spam", "spam", "spam", "approved"]
    undone = await moderator.bulk(ids[:3], "status", "spam", to="pending")
    assert [c[2] for c in undone.json()["changed"]] == ["pending"] * 3
    plain = await moderator.client.post("/admin/bulk", data={"csrf": moderator.csrf, "ids": [str(i) for i in ids[:2]],
                                                             "action": "trash", "from_status": "pending",
                                                             "back": "status=pending"})
    assert plain.status_code == 303 and plain.headers["location"] == "/admin?status=pending"
    assert "Moved to the Trash: 2 comments." in (await moderator.client.get("/admin")).text
    delete = await moderator.bulk(ids[:1], "delete", "trash")
    assert delete.status_code == 422


async def test_edit_in_place(clients: Clients, moderator: Moderator, service: Any) -> None:
    comment_id = (await post(clients, body="Original words.")).json()["id"]
    answer = await moderator.client.post(
        f"/admin/comments/{comment_id}/edit", headers=JSON,
        data={"csrf": moderator.csrf, "body": "Now <b>bold</b> <script>alert(1)</script>", "author": "Ann B.",
              "url": "ann.example", "back": "status=pending"})
    assert answer.status_code == 200, answer.text
    fragment = answer.json()["html"]
    assert fragment.startswith(f'<li class="adm-item adm-pending" id="comment-{comment_id}"')
    assert "<b>bold</b>" in fragment and "<script" not in fragment and "&lt;script&gt;" in fragment  # textarea
    assert 'href="https://ann.example"' in fragment and "Ann B." in fragment
    full = store.get_full(service.db, comment_id)
    assert full["body"] == "Now <b>bold</b> <script>alert(1)</script>" and "<script" not in full["body_html"]
    assert full["author"] == "Ann B." and full["url"] == "https://ann.example" and full["status"] == "pending"
    cleared = await moderator.client.post(f"/admin/comments/{comment_id}/edit", headers=JSON,
                                          data={"csrf": moderator.csrf, "url": ""})
    assert cleared.status_code == 200 and store.get_full(service.db, comment_id)["url"] is None
    bad = await moderator.client.post(f"/admin/comments/{comment_id}/edit", headers=JSON,
                                      data={"csrf": moderator.csrf, "author": "  ", "url": "javascript:alert(1)"})
    assert bad.status_code == 422 and set(bad.json()["error"]["fields"]) == {"author", "url"}
    plain = await moderator.client.post(f"/admin/comments/{comment_id}/edit",
                                        data={"csrf": moderator.csrf, "body": "Plain edit.", "back": "status=pending"})
    assert plain.status_code == 303 and store.get_full(service.db, comment_id)["body"] == "Plain edit."


async def test_reply_as_the_site(clients: Clients, moderator: Moderator, service: Any) -> None:
    parent = (await post(clients, body="Is the night bus back?")).json()["id"]
    answer = await moderator.client.post(
        f"/admin/comments/{parent}/reply", headers=JSON,
        data={"csrf": moderator.csrf, "body": "Yes, from <em>Friday</em>.", "from_status": "pending", "author": ""})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert (data["from"], data["to"]) == ("pending", "approved")
    reply = store.get_full(service.db, data["reply"])
    assert reply["status"] == "approved" and reply["parent"] == parent and reply["email"] == ""
    assert reply["author"] == "moderator"  # the moderator's name unless the form says otherwise
    assert reply["body_html"] == "<p>Yes, from <em>Friday</em>.</p>"
    thread = (await clients.client().get("/api/comments", params={"page": "/p/1"})).json()
    assert thread["comments"][0]["id"] == parent
    assert thread["comments"][0]["replies"][0]["id"] == data["reply"]
    named = await moderator.client.post(f"/admin/comments/{parent}/reply",
                                        data={"csrf": moderator.csrf, "body": "And Saturday.", "author": "The Editors",
                                              "from_status": "approved", "back": "status=approved"})
    assert named.status_code == 303
    spam_id = (await post(clients)).json()["id"]
    await moderator.act(spam_id, "spam", "pending")
    refused = await moderator.client.post(f"/admin/comments/{spam_id}/reply", headers=JSON,
                                          data={"csrf": moderator.csrf, "body": "Hi", "from_status": "spam"})
    assert refused.status_code == 422
    empty = await moderator.client.post(f"/admin/comments/{parent}/reply", headers=JSON,
                                        data={"csrf": moderator.csrf, "body": " "})
    assert empty.status_code == 422 and "body" in empty.json()["error"]["fields"]


# ---- what the queue shows --------------------------------------------------------------------------


async def test_queue_shows_each_comment_in_full_and_escaped(clients: Clients, moderator: Moderator, mod: Any) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    parent = (await post(clients, body="The first words of the parent comment are these ones here, and more "
                                       "words follow after them.", author="Pat")).json()["id"]
    await approve(mod, parent)
    child = (await post(clients, body="Hello <script>alert(2)</script> <b>bold</b> https://example.com",
                        author=hostile, url="https://bob.example/?a=1&b=2", email="bob+tag@example.org",
                        parent=parent)).json()["id"]
    answer = await moderator.client.get("/admin")
    text = answer.text
    assert_page_headers(answer)
    assert_no_inline_code(text)
    item = text[text.index(f'id="comment-{child}"'):]
    item = item[:item.index("</li>")]
    assert hostile not in item and html.escape(hostile, quote=False) in item
    assert "<script" not in item and "alert(2)" in item and "<b>bold</b>" in item
    assert 'href="https://example.com" rel="nofollow ugc noopener"' in item
    assert "bob+tag@example.org" in item and 'href="https://bob.example/?a=1&amp;b=2"' in item
    assert f'href="{ORIGIN}/p/1"' in item  # the article
    assert 'class="adm-ip"' in item and '<time class="adm-time" datetime="20' in item
    assert "spam score" in item
    assert "In reply to" in item and "Pat" in item
    assert "<q>The first words of the parent comment are these ones here, and…</q>" in item
    for label, count in (("Pending", 1), ("Approved", 1), ("Spam", 0), ("Trash", 0)):
        assert re.search(rf'{label} <span class="adm-count" data-count="\w+">{count}</span>', text), label


async def test_blocked_words_show_their_reason_in_the_spam_tab(clients: Clients, moderator: Moderator,
                                                               service: Any) -> None:
    rules = store.get_rules(service.db)
    store.put_rules(service.db, rules.model_copy(update={"blocked_words": ["casino"]}), "test", store.utcnow())
    spam_id = (await post(clients, body="Best casino here")).json()["id"]
    text = (await moderator.client.get("/admin?status=spam")).text
    assert f'id="comment-{spam_id}"' in text and "blocked words: casino" in text
    assert 'value="notspam"' in text and 'value="delete"' in text and 'value="approve"' in text


async def test_filter_search_and_paging(clients: Clients, moderator: Moderator) -> None:
    ids = [(await post(clients, page="/a/", body=f"Comment {n} about trains")).json()["id"] for n in range(3)]
    other = (await post(clients, page="/b/", body="About buses", author="Zed")).json()["id"]
    shown = lambda text: [int(i) for i in re.findall(r'<li class="adm-item[^"]*" id="comment-(\d+)"', text)]  # noqa: E731
    assert shown((await moderator.client.get("/admin")).text) == [*ids, other]  # oldest first
    assert shown((await moderator.client.get("/admin", params={"page": "/b/"})).text) == [other]
    assert shown((await moderator.client.get("/admin", params={"q": "zed"})).text) == [other]
    first = await moderator.client.get("/admin", params={"limit": "2"})
    assert shown(first.text) == ids[:2]
    next_url = html.unescape(re.search(r'href="([^"]+)" rel="next"', first.text).group(1))  # type: ignore[union-attr]
    assert parse_qs(urlsplit(next_url).query)["status"] == ["pending"]
    second = await moderator.client.get(next_url + "&limit=2")
    assert shown(second.text) == [ids[2], other]
    assert "« First page" in second.text
    filtered = (await moderator.client.get("/admin", params={"page": "/a/"})).text
    assert re.search(r'Pending <span class="adm-count" data-count="pending">3</span>', filtered)


# ---- rules, pages, tokens ---------------------------------------------------------------------------


async def test_rules_form_saves_and_explains_bad_values(clients: Clients, moderator: Moderator,
                                                         service: Any) -> None:
    page = await moderator.client.get("/admin/settings")
    assert page.status_code == 200
    assert_page_headers(page)
    assert_no_inline_code(page.text)
    for name in store.get_rules(service.db).model_dump():
        assert f'name="{name}"' in page.text, name
    before = store.get_rules(service.db)
    form = {"csrf": moderator.csrf, **{k: str(v) for k, v in before.model_dump().items() if not isinstance(v, (list, bool))}}
    bad = await moderator.client.post("/admin/rules", data={**form, "max_links": "-1", "flood_seconds": "soon",
                                                            "moderation": "never"})
    assert bad.status_code == 422
    assert "The rules were not saved" in bad.text and 'value="soon"' in bad.text
    assert bad.text.count('class="adm-error"') == 3
    assert store.get_rules(service.db) == before
    good = await moderator.client.post("/admin/rules", data={
        **form, "moderation": "rules", "blocked_words": "viagra\n  casino \n\n", "moderation_words": "",
        "max_links": "1", "auto_approve_known_authors": "on", "flood_seconds": "0"})
    assert good.status_code == 303 and good.headers["location"] == "/admin/settings"
    rules = store.get_rules(service.db)
    assert (rules.moderation, rules.blocked_words, rules.max_links, rules.auto_approve_known_authors) == \
        ("rules", ["viagra", "casino"], 1, True)
    assert "Saved the moderation rules." in (await moderator.client.get("/admin/settings")).text
    published = await post(clients, body="Plain and friendly.")
    assert published.status_code == 201  # the rule took effect on the next comment
    as_json = await moderator.client.post("/admin/rules", headers=JSON, data={**form, "max_links": "x"})
    assert as_json.status_code == 422 and "max_links" in as_json.json()["error"]["fields"]


async def test_pages_close_and_open_and_tokens_listed(clients: Clients, moderator: Moderator, service: Any) -> None:
    await post(clients, page="/closing/")
    page = await moderator.client.get("/admin/settings")
    assert "/closing/" in page.text and f'href="{ORIGIN}/closing/"' in page.text
    assert re.search(r"<th scope=\"row\">moderator \(you\)</th>", page.text)
    closed = await moderator.client.post("/admin/pages", data={"csrf": moderator.csrf, "page": "/closing/",
                                                               "closed": "1"})
    assert closed.status_code == 303 and closed.headers["location"] == "/admin/settings"
    assert (await post(clients, page="/closing/")).status_code == 403
    assert "Closed /closing/ to new comments." in (await moderator.client.get("/admin/settings")).text
    opened = await moderator.client.post("/admin/pages", headers=JSON,
                                         data={"csrf": moderator.csrf, "page": "/closing/", "closed": "0"})
    assert opened.status_code == 200 and opened.json()["closed"] is False
    assert (await post(clients, page="/closing/")).status_code == 202
    bad = await moderator.client.post("/admin/pages", headers=JSON, data={"csrf": moderator.csrf, "closed": "1"})
    assert bad.status_code == 422


async def test_static_files(clients: Clients) -> None:
    client = clients.client()
    for name, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css")):
        answer = await client.get(f"/admin/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        again = await client.get(f"/admin/static/{name}", headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304


async def test_sign_in_returns_to_the_view_asked_for_and_never_elsewhere(clients: Clients, token: str) -> None:
    client = clients.client(MOD_IP)
    asked = await client.get("/admin", params={"status": "spam", "page": "/p/1"})
    location = asked.headers["location"]
    assert location.startswith("/admin/signin?next=")
    target = parse_qs(urlsplit(location).query)["next"][0]
    assert target == "/admin?status=spam&page=%2Fp%2F1"
    form = await client.get(location)
    assert f'name="next" value="{html.escape(target)}"' in form.text
    answer = await client.post("/admin/signin", data={"token": token, "next": target})
    assert answer.headers["location"] == target
    for evil in ("https://evil.example/admin", "//evil.example/admin", "/api/admin/comments", "javascript:alert(1)"):
        other = clients.client()
        answer = await other.post("/admin/signin", data={"token": token, "next": evil})
        assert answer.headers["location"] == "/admin", evil


async def test_undo_takes_back_what_the_spam_filter_learned(clients: Clients, moderator: Moderator,
                                                            service: Any) -> None:
    comment_id = (await post(clients)).json()["id"]

    def learned() -> str | None:
        with service.db.read() as conn:
            return conn.execute(sa.text("SELECT learned FROM comment WHERE id = :i"), {"i": comment_id}).scalar()

    await moderator.act(comment_id, "spam", "pending")
    assert learned() == "spam"
    await moderator.bulk([comment_id], "status", "spam", to="pending")  # what Undo posts
    assert learned() is None
    await moderator.act(comment_id, "approve", "pending")
    await moderator.act(comment_id, "status", "approved", to="pending")
    assert learned() is None


def test_failed_sign_ins_outlive_the_rate_table_purge(service: Any) -> None:
    now = store.utcnow()
    key = logins.login_key("a-keyed-address")
    for _ in range(adminsession.LOGIN_LIMIT):
        logins.record_login_failure(service.db, key, adminsession.LOGIN_WINDOW_SECONDS, now)
    with service.db.write() as conn:  # what the purge of old rate events does
        conn.execute(rate_t.delete().where(rate_t.c.created_at < now - timedelta(seconds=60)))
    limit, window = adminsession.LOGIN_LIMIT, adminsession.LOGIN_WINDOW_SECONDS
    assert logins.login_retry_after(service.db, key, limit, now + timedelta(seconds=window - 300)) == 300
    assert logins.login_retry_after(service.db, key, limit, now + timedelta(seconds=window + 1)) == 0
    assert logins.login_retry_after(service.db, logins.login_key("another"), limit, now) == 0
