"""The public endpoints through the real app in-process: every answer and error of API.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from comments.store.common import comment_t
from tests.conftest import Clients, approve, comment, post


async def rules(mod: httpx.AsyncClient, **changes: Any) -> None:
    current = (await mod.get("/api/admin/rules")).json()
    response = await mod.put("/api/admin/rules", json={**current, **changes})
    assert response.status_code == 200, response.text


# ---- leave a reply ----------------------------------------------------------------


async def test_new_comment_waits_in_the_queue(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", json=comment(body="Hello *world*", url="bob.example"))
    assert response.status_code == 202
    data = response.json()
    assert set(data) == {"id", "parent", "author", "url", "body_html", "created_at", "status", "edit_token"}
    assert data["status"] == "pending"
    assert data["url"] == "https://bob.example"
    assert data["body_html"] == "<p>Hello *world*</p>"
    assert data["created_at"].endswith("Z") and len(data["created_at"]) == 20
    assert response.headers["content-type"] == "application/json"


async def test_rules_mode_publishes_at_once_with_201(clients: Clients, mod: httpx.AsyncClient) -> None:
    await rules(mod, moderation="rules")
    response = await post(clients)
    assert response.status_code == 201
    assert response.json()["status"] == "approved"


async def test_body_is_sanitised_and_stored_as_written(clients: Clients, service: Any) -> None:
    body = 'Look <a href="javascript:alert(1)">here</a> <b>bold</b>\n\nsee https://example.com <script>x()</script>'
    response = await post(clients, body=body)
    html = response.json()["body_html"]
    assert "<script" not in html and "javascript:" not in html
    assert "<b>bold</b>" in html
    assert '<a href="https://example.com" rel="nofollow ugc noopener">https://example.com</a>' in html
    assert html.count("<p>") == 2
    with service.db.read() as conn:
        stored = conn.execute(sa.select(comment_t.c.body)).scalar_one()
    assert stored == body


async def test_wordpress_form_fields_work_unchanged(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", data={
        "comment": "From the WordPress form", "author": "Ann", "email": "ann@example.org",
        "url": "", "comment_post_ID": "/2023/01/russia-casualties/", "comment_parent": "0",
        "submit": "Post Comment",
    }, headers={"Accept": "application/json"})
    assert response.status_code == 202, response.text
    assert response.json()["body_html"] == "<p>From the WordPress form</p>"


async def test_multipart_form(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", data=comment(), files={"unused": (None, "x")})
    assert response.status_code == 202, response.text


async def test_multipart_file_upload_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", data=comment(), files={"f": ("a.txt", b"x", "text/plain")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"site_origins": "https://blog.example"}


async def test_html_form_post_redirects_to_the_article(clients: Clients) -> None:
    form = {**comment(), "redirect_to": "https://blog.example/2023/01/a/#respond"}
    response = await clients.client().post("/api/comments", data=form, headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://blog.example/2023/01/a/#comment-")
    referer = await clients.client().post("/api/comments", data=comment(), headers={
        "Accept": "text/html", "Referer": "https://blog.example/b/"})
    assert referer.status_code == 303
    assert referer.headers["location"].startswith("https://blog.example/b/#comment-")


async def test_redirect_only_to_configured_origins(clients: Clients) -> None:
    form = {**comment(), "redirect_to": "https://evil.example/"}
    response = await clients.client().post("/api/comments", data=form, headers={"Accept": "text/html"})
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    json_post = await clients.client().post("/api/comments", json={**comment(), "redirect_to": "https://blog.example/"},
                                  headers={"Accept": "text/html"})
    assert json_post.status_code == 202


async def test_validation_names_every_failing_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", json={"page": "", "body": 5, "author": None, "email": "nope",
                                                        "url": "javascript:alert(1)", "parent": "abc"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {"page", "body", "author", "email", "url", "parent"}
    assert "email" in error["message"]


async def test_body_limit_is_configurable(clients: Clients, app: Any) -> None:
    limit = app.state.service.settings.max_body_chars
    assert (await post(clients, body="x" * limit)).status_code == 202
    response = await post(clients, body="y" * (limit + 1))
    assert response.status_code == 422
    assert "body" in response.json()["error"]["fields"]


async def test_nul_byte_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/comments", json=comment(body="a\u0000b"))
    assert response.status_code == 422


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"text"', b"\xff\xfe", b'{"body": "\\ud800"}', b"[" * 5000 + b"]" * 5000, b"null"],
)
async def test_unparseable_json_is_a_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/api/comments", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_other_content_types_are_a_415(client: httpx.AsyncClient) -> None:
    for headers in ({"Content-Type": "text/plain"}, {}):
        response = await client.post("/api/comments", content=b"hello", headers=headers)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_oversized_request_is_a_413_by_length_and_by_stream(client: httpx.AsyncClient) -> None:
    big = b'{"body": "' + b"x" * 70_000 + b'"}'
    response = await client.post("/api/comments", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1000

    streamed = await client.post("/api/comments", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


async def test_parent_must_be_an_approved_comment_on_the_same_page(
    clients: Clients, mod: httpx.AsyncClient
) -> None:
    pending = (await post(clients)).json()["id"]
    assert (await post(clients, parent=pending)).status_code == 422
    approved = (await post(clients)).json()["id"]
    await approve(mod, approved)
    other_page = await post(clients, page="/p/2", parent=approved)
    assert other_page.status_code == 422
    assert other_page.json()["error"]["fields"] == {"parent": "is not an approved comment on this page"}
    assert (await post(clients, parent=999999)).status_code == 422
    reply = await post(clients, parent=str(approved))
    assert reply.status_code == 202
    assert reply.json()["parent"] == approved


async def test_closed_page_is_a_403(clients: Clients, mod: httpx.AsyncClient) -> None:
    closed = await mod.patch("/api/admin/pages", params={"page": "/p/1"}, json={"closed": True})
    assert closed.status_code == 200
    thread = await clients.client().get("/api/comments", params={"page": "/p/1"})
    assert thread.json()["closed"] is True
    response = await post(clients)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "closed"
    await mod.patch("/api/admin/pages", params={"page": "/p/1"}, json={"closed": False})
    assert (await post(clients)).status_code == 202


async def test_same_text_from_the_same_email_on_the_same_page_is_a_409(clients: Clients, mod: httpx.AsyncClient) -> None:
    await rules(mod, flood_seconds=0)
    first = comment(body="Exactly this.", email="dup@example.org")
    assert (await clients.client().post("/api/comments", json=first)).status_code == 202
    again = await clients.client().post("/api/comments", json={**first, "body": "  exactly   THIS. "})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate"
    elsewhere = await clients.client().post("/api/comments", json={**first, "page": "/p/2"})
    assert elsewhere.status_code == 202


async def test_flood_interval_per_address_and_per_email(clients: Clients) -> None:
    reader = clients.client()
    assert (await reader.post("/api/comments", json=comment())).status_code == 202
    quick = await reader.post("/api/comments", json=comment())
    assert quick.status_code == 429
    assert quick.json()["error"]["code"] == "rate_limited"
    assert int(quick.headers["retry-after"]) in range(1, 16)
    same_email = comment(email="fast@example.org")
    assert (await clients.client().post("/api/comments", json=same_email)).status_code == 202
    other_ip = await clients.client().post("/api/comments", json={**same_email, "body": "another"})
    assert other_ip.status_code == 429


async def test_flood_off_when_zero(clients: Clients, mod: httpx.AsyncClient) -> None:
    await rules(mod, flood_seconds=0)
    reader = clients.client()
    for _ in range(3):
        assert (await reader.post("/api/comments", json=comment())).status_code == 202


class TestRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_limit": "3/minute"}

    async def test_rate_limit_per_address_with_retry_after(self, clients: Clients, mod: httpx.AsyncClient) -> None:
        await rules(mod, flood_seconds=0)
        reader = clients.client("203.0.113.9")
        for _ in range(3):
            assert (await reader.post("/api/comments", json=comment())).status_code == 202
        limited = await reader.post("/api/comments", json=comment())
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) in range(1, 61)
        assert (await clients.client().post("/api/comments", json=comment())).status_code == 202

    async def test_rejected_posts_do_not_count(self, clients: Clients, mod: httpx.AsyncClient) -> None:
        await rules(mod, flood_seconds=0)
        reader = clients.client("203.0.113.10")
        for _ in range(5):
            assert (await reader.post("/api/comments", json={"page": "/p"})).status_code == 422
        assert (await reader.post("/api/comments", json=comment())).status_code == 202


class TestTrustedProxy:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"trusted_proxies": "192.0.2.200", "ip_retention_days": 7}

    async def test_forwarded_address_is_believed_only_from_trusted_proxies(
        self, clients: Clients, mod: httpx.AsyncClient
    ) -> None:
        proxy = clients.client("192.0.2.200")
        await proxy.post("/api/comments", json=comment(), headers={"X-Forwarded-For": "203.0.113.77"})
        stranger = clients.client("192.0.2.201")
        await stranger.post("/api/comments", json=comment(), headers={"X-Forwarded-For": "203.0.113.78"})
        ips = sorted(item["ip"] for item in (await mod.get("/api/admin/comments")).json()["items"])
        assert ips == ["192.0.2.201", "203.0.113.77"]


# ---- the thread ---------------------------------------------------------------------


async def test_thread_nests_replies_oldest_first(clients: Clients, mod: httpx.AsyncClient,
                                                 client: httpx.AsyncClient) -> None:
    first = (await post(clients, author="Ann")).json()["id"]
    await approve(mod, first)
    second = (await post(clients, author="Bob", parent=first)).json()["id"]
    await approve(mod, second)
    third = (await post(clients, author="Cy", parent=second)).json()["id"]
    await approve(mod, third)
    await post(clients, author="Pending")
    response = await client.get("/api/comments", params={"page": "/p/1"})
    assert response.status_code == 200
    data = response.json()
    assert data["page"] == "/p/1" and data["total"] == 3 and data["next"] is None
    [top] = data["comments"]
    assert set(top) == {"id", "parent", "author", "url", "body_html", "created_at", "replies"}
    assert top["id"] == first and top["parent"] is None
    assert top["replies"][0]["id"] == second and top["replies"][0]["parent"] == first
    assert top["replies"][0]["replies"][0]["id"] == third


async def test_reply_under_a_hidden_parent_moves_up(clients: Clients, mod: httpx.AsyncClient,
                                                    client: httpx.AsyncClient) -> None:
    ids = []
    parent = None
    for _ in range(3):
        new = (await post(clients, parent=parent)).json()["id"]
        await approve(mod, new)
        ids.append(new)
        parent = new
    await mod.patch(f"/api/admin/comments/{ids[1]}", json={"status": "spam"})
    [top] = (await client.get("/api/comments", params={"page": "/p/1"})).json()["comments"]
    assert top["id"] == ids[0]
    assert [(r["id"], r["parent"]) for r in top["replies"]] == [(ids[2], ids[0])]
    await mod.patch(f"/api/admin/comments/{ids[0]}", json={"status": "trash"})
    data = (await client.get("/api/comments", params={"page": "/p/1"})).json()
    assert [(c["id"], c["parent"]) for c in data["comments"]] == [(ids[2], None)]
    single = (await client.get(f"/api/comments/{ids[2]}")).json()
    assert single["parent"] is None


async def test_thread_paging_by_top_level_comment(clients: Clients, mod: httpx.AsyncClient,
                                                  client: httpx.AsyncClient) -> None:
    tops = []
    for _ in range(5):
        new = (await post(clients)).json()["id"]
        await approve(mod, new)
        tops.append(new)
    reply = (await post(clients, parent=tops[0])).json()["id"]
    await approve(mod, reply)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"page": "/p/1", "limit": "2", **({"cursor": cursor} if cursor else {})}
        data = (await client.get("/api/comments", params=params)).json()
        assert data["total"] == 6
        seen += [c["id"] for c in data["comments"]]
        pages += 1
        cursor = data["next"]
        if cursor is None:
            break
    assert seen == tops and pages == 3
    first = (await client.get("/api/comments", params={"page": "/p/1", "limit": "2"})).json()
    assert first["comments"][0]["replies"][0]["id"] == reply


async def test_thread_errors(client: httpx.AsyncClient) -> None:
    for params, status in [({}, 422), ({"page": "/p", "limit": "0"}, 422), ({"page": "/p", "limit": "201"}, 422),
                           ({"page": "/p", "limit": "ten"}, 422), ({"page": "/p", "cursor": "bogus"}, 400),
                           ({"page": "/p", "cursor": "eyJ4Ijo.AAAA"}, 400)]:
        response = await client.get("/api/comments", params=params)
        assert response.status_code == status, params
        assert response.json()["error"]["code"] in {"validation_error", "bad_request"}


async def test_unknown_page_is_an_empty_thread(client: httpx.AsyncClient) -> None:
    data = (await client.get("/api/comments", params={"page": "/nobody/here/"})).json()
    assert data == {"page": "/nobody/here/", "total": 0, "comments": [], "next": None, "closed": False}


async def test_etag_and_304(clients: Clients, mod: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    first = (await post(clients)).json()["id"]
    await approve(mod, first)
    response = await client.get("/api/comments", params={"page": "/p/1"})
    etag = response.headers["etag"]
    again = await client.get("/api/comments", params={"page": "/p/1"}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    await post(clients, body="still pending")  # a pending comment does not move the public ETag
    assert (await client.get("/api/comments", params={"page": "/p/1"},
                             headers={"If-None-Match": etag})).status_code == 304
    approved = (await post(clients)).json()["id"]
    await approve(mod, approved)
    changed = await client.get("/api/comments", params={"page": "/p/1"}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["total"] == 2
    assert changed.headers["etag"] != etag
    await mod.patch(f"/api/admin/comments/{approved}", json={"body": "edited by the moderator"})
    edited = await client.get("/api/comments", params={"page": "/p/1"},
                              headers={"If-None-Match": changed.headers["etag"]})
    assert edited.status_code == 200
    assert edited.json()["comments"][1]["body_html"] == "<p>edited by the moderator</p>"


# ---- one comment, counts, health -----------------------------------------------------


async def test_one_comment(clients: Clients, mod: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    created = (await post(clients)).json()
    assert (await client.get(f"/api/comments/{created['id']}")).status_code == 404
    await approve(mod, created["id"])
    data = (await client.get(f"/api/comments/{created['id']}")).json()
    assert set(data) == {"id", "parent", "author", "url", "body_html", "created_at"}
    for bad in ["0", "abc", "１", str(2**63), "99999"]:
        response = await client.get(f"/api/comments/{bad}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_counts(clients: Clients, mod: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    for page in ["/a", "/a", "/b"]:
        await approve(mod, (await post(clients, page=page)).json()["id"])
    await post(clients, page="/a")
    response = await client.get("/api/counts", params=[("page", "/a"), ("page", "/b"), ("page", "/c")])
    assert response.json() == {"/a": 2, "/b": 1, "/c": 0}
    assert (await client.get("/api/counts")).json() == {}


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_unknown_path_and_wrong_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await client.put("/api/comments")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]


# ---- author edits ----------------------------------------------------------------------


async def test_author_sees_edits_and_deletes_within_the_window(clients: Clients, mod: httpx.AsyncClient) -> None:
    await rules(mod, moderation="rules", moderation_words=["casino"])
    reader = clients.client()
    created = (await reader.post("/api/comments", json=comment(body="first words"))).json()
    assert created["status"] == "approved"
    token = {"X-Edit-Token": created["edit_token"]}
    seen = await reader.get(f"/api/comments/{created['id']}", headers=token)
    assert seen.status_code == 200 and seen.json()["status"] == "approved"

    edited = await reader.patch(f"/api/comments/{created['id']}", json={"body": "better <b>words</b>"}, headers=token)
    assert edited.status_code == 200
    assert edited.json()["body_html"] == "<p>better <b>words</b></p>"
    assert edited.json()["status"] == "approved"

    held = await reader.patch(f"/api/comments/{created['id']}", json={"body": "visit my casino"}, headers=token)
    assert held.json()["status"] == "pending"
    assert (await reader.get(f"/api/comments/{created['id']}")).status_code == 404
    assert (await reader.get(f"/api/comments/{created['id']}", headers=token)).json()["status"] == "pending"

    assert (await reader.delete(f"/api/comments/{created['id']}", headers=token)).status_code == 204
    assert (await mod.get(f"/api/admin/comments/{created['id']}")).status_code == 404


async def test_wrong_token_and_status_changes_are_refused(clients: Clients) -> None:
    reader = clients.client()
    created = (await reader.post("/api/comments", json=comment())).json()
    other = (await clients.client().post("/api/comments", json=comment())).json()
    wrong = {"X-Edit-Token": other["edit_token"]}
    for method in ("get", "delete"):
        response = await getattr(reader, method)(f"/api/comments/{created['id']}", headers=wrong)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert (await reader.patch(f"/api/comments/{created['id']}", json={"body": "x"}, headers=wrong)).status_code == 403
    assert (await reader.patch(f"/api/comments/{created['id']}", json={"body": "x"})).status_code == 403
    status = await reader.patch(f"/api/comments/{created['id']}", json={"body": "x", "status": "approved"},
                                headers={"X-Edit-Token": created["edit_token"]})
    assert status.status_code == 422


async def test_edit_window_closes(clients: Clients, mod: httpx.AsyncClient, service: Any) -> None:
    reader = clients.client()
    created = (await reader.post("/api/comments", json=comment())).json()
    with service.db.write() as conn:
        created_at = conn.execute(sa.select(comment_t.c.created_at)).scalar_one()
        conn.execute(comment_t.update().values(created_at=created_at - timedelta(seconds=901)))
    token = {"X-Edit-Token": created["edit_token"]}
    assert (await reader.get(f"/api/comments/{created['id']}", headers=token)).status_code == 403
    assert (await reader.patch(f"/api/comments/{created['id']}", json={"body": "late"}, headers=token)).status_code == 403
    await rules(mod, edit_window_seconds=3600)
    assert (await reader.get(f"/api/comments/{created['id']}", headers=token)).status_code == 200


async def test_spam_looks_like_pending_to_its_author(clients: Clients, mod: httpx.AsyncClient) -> None:
    await rules(mod, blocked_words=["viagra"])
    reader = clients.client()
    response = await reader.post("/api/comments", json=comment(body="cheap viagra"))
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    token = {"X-Edit-Token": response.json()["edit_token"]}
    assert (await reader.get(f"/api/comments/{response.json()['id']}", headers=token)).json()["status"] == "pending"
    full = (await mod.get(f"/api/admin/comments/{response.json()['id']}")).json()
    assert full["status"] == "spam" and full["spam_reasons"] == ["blocked words: viagra"]


# ---- CORS ------------------------------------------------------------------------------


async def test_cors_only_for_site_origins_and_never_for_admin(client: httpx.AsyncClient) -> None:
    preflight = {"Origin": "https://blog.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    ok = await client.options("/api/comments", headers=preflight)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://blog.example"
    assert "access-control-allow-credentials" not in ok.headers
    evil = await client.options("/api/comments", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    simple = await client.get("/api/comments", params={"page": "/p"}, headers={"Origin": "https://blog.example"})
    assert simple.headers["access-control-allow-origin"] == "https://blog.example"
    admin = await client.options("/api/admin/comments", headers=preflight)
    assert "access-control-allow-origin" not in admin.headers
