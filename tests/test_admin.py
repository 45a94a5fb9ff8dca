"""The moderation endpoints through the real app: authentication, lists, changes, rules, pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from comments import store
from comments.store.common import action_t
from tests.conftest import Clients, approve, post


async def test_every_admin_endpoint_needs_a_valid_token(clients: Clients, token: str, service: Any) -> None:
    anonymous = clients.client()
    calls = [("get", "/api/admin/comments"), ("get", "/api/admin/comments/1"), ("patch", "/api/admin/comments/1"),
             ("delete", "/api/admin/comments/1"), ("post", "/api/admin/comments/bulk"), ("get", "/api/admin/rules"),
             ("put", "/api/admin/rules"), ("get", "/api/admin/pages"), ("patch", "/api/admin/pages?page=/p")]
    bodies = set()
    for header in (None, "Bearer", "Bearer wrong", f"Basic {token}", f"Bearer {token}x", "Bearer " + "x" * 5000):
        headers = {"Authorization": header} if header else {}
        for method, path in calls:
            response = await anonymous.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (header, path)
            assert response.headers["www-authenticate"] == "Bearer"
            bodies.add(response.content)
    assert len(bodies) == 1  # never a hint which part was wrong
    store.revoke_token(service.db, "moderator", store.utcnow())
    revoked = await anonymous.get("/api/admin/comments", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401


async def test_queue_is_oldest_first_and_other_lists_newest_first(clients: Clients, mod: httpx.AsyncClient) -> None:
    ids = [(await post(clients)).json()["id"] for _ in range(4)]
    for comment_id in ids[:2]:
        await approve(mod, comment_id)
    queue = (await mod.get("/api/admin/comments")).json()
    assert [c["id"] for c in queue["items"]] == ids[2:]
    assert queue["counts"] == {"pending": 2, "approved": 2, "spam": 0, "trash": 0}
    assert queue["next"] is None
    approved = (await mod.get("/api/admin/comments", params={"status": "approved"})).json()
    assert [c["id"] for c in approved["items"]] == ids[1::-1]
    item = queue["items"][0]
    assert set(item) == {"id", "parent", "author", "url", "body_html", "created_at", "page", "status", "email",
                         "ip", "user_agent", "spam_score", "spam_reasons", "updated_at"}
    assert item["email"].endswith("@example.org") and item["ip"].startswith(("192.0.2.", "10."))


async def test_search_filter_and_paging(clients: Clients, mod: httpx.AsyncClient) -> None:
    await post(clients, body="About 100% of cats", author="Zed")
    await post(clients, body="Dogs", email="catlover@example.org")
    await post(clients, body="Birds", page="/other")
    await post(clients, body="under_score here")
    found = (await mod.get("/api/admin/comments", params={"q": "CAT"})).json()["items"]
    assert [c["author"] for c in found] == ["Zed"]  # addresses are encrypted: no partial matches
    for address in ("catlover@example.org", "CatLover@EXAMPLE.org"):
        by_email = (await mod.get("/api/admin/comments", params={"q": address})).json()["items"]
        assert [c["body_html"] for c in by_email] == ["<p>Dogs</p>"]
    assert len((await mod.get("/api/admin/comments", params={"q": "zed"})).json()["items"]) == 1
    assert len((await mod.get("/api/admin/comments", params={"q": "100%"})).json()["items"]) == 1
    assert len((await mod.get("/api/admin/comments", params={"q": "d_g"})).json()["items"]) == 0
    other = (await mod.get("/api/admin/comments", params={"page": "/other"})).json()
    assert [c["body_html"] for c in other["items"]] == ["<p>Birds</p>"]
    assert other["counts"]["pending"] == 1
    assert (await mod.get("/api/admin/comments", params={"page": "/none"})).json()["items"] == []
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        data = (await mod.get("/api/admin/comments", params=params)).json()
        seen += [c["id"] for c in data["items"]]
        cursor = data["next"]
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == 4
    approved_cursor = (await mod.get("/api/admin/comments", params={"limit": "1"})).json()["next"]
    wrong_list = await mod.get("/api/admin/comments", params={"status": "spam", "cursor": approved_cursor})
    assert wrong_list.status_code == 400


@pytest.mark.parametrize("params", [{"status": "deleted"}, {"limit": "0"}, {"limit": "500"}, {"q": "x" * 201}])
async def test_list_validation(mod: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await mod.get("/api/admin/comments", params=params)
    assert response.status_code == 422


async def test_bad_cursor(mod: httpx.AsyncClient) -> None:
    assert (await mod.get("/api/admin/comments", params={"cursor": "x.y"})).status_code == 400
    assert (await mod.get("/api/admin/pages", params={"cursor": "x.y"})).status_code == 400


async def test_patch_changes_and_records_each_action(clients: Clients, mod: httpx.AsyncClient, service: Any) -> None:
    comment_id = (await post(clients, body="original")).json()["id"]
    response = await mod.patch(f"/api/admin/comments/{comment_id}", json={
        "status": "approved", "body": "new <script>x</script> text", "author": "Ann B.", "url": "ann.example"})
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "approved" and data["author"] == "Ann B." and data["url"] == "https://ann.example"
    assert data["body_html"] == "<p>new x text</p>"
    cleared = await mod.patch(f"/api/admin/comments/{comment_id}", json={"url": None})
    assert cleared.json()["url"] is None
    with service.db.read() as conn:
        rows = conn.execute(sa.select(action_t.c.actor, action_t.c.action, action_t.c.from_value,
                                      action_t.c.to_value).where(action_t.c.comment_id == comment_id)
                            .order_by(action_t.c.id)).all()
    assert [tuple(r) for r in rows] == [
        ("moderator", "edit_body", None, None), ("moderator", "edit_author", "Ann", "Ann B."),
        ("moderator", "edit_url", None, "https://ann.example"), ("moderator", "status", "pending", "approved"),
        ("moderator", "edit_url", "https://ann.example", None)]


async def test_patch_errors(clients: Clients, mod: httpx.AsyncClient) -> None:
    comment_id = (await post(clients)).json()["id"]
    for body in ({"status": "gone"}, {"body": ""}, {"author": 5}, {"url": "javascript:x"}, {"body": "x" * 10_001}):
        response = await mod.patch(f"/api/admin/comments/{comment_id}", json=body)
        assert response.status_code == 422, body
    assert (await mod.patch("/api/admin/comments/999", json={"status": "spam"})).status_code == 404
    assert (await mod.patch(f"/api/admin/comments/{comment_id}", content=b"[1]",
                            headers={"Content-Type": "application/json"})).status_code == 400
    assert (await mod.patch(f"/api/admin/comments/{comment_id}", content=b"status=spam",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})).status_code == 415
    assert (await mod.get("/api/admin/comments/abc")).status_code == 404


async def test_bulk(clients: Clients, mod: httpx.AsyncClient) -> None:
    ids = [(await post(clients)).json()["id"] for _ in range(2)]
    response = await mod.post("/api/admin/comments/bulk", json={"ids": [*ids, 999], "status": "approved"})
    assert response.json() == {"updated": ids, "missing": [999]}
    counts = (await mod.get("/api/admin/comments")).json()["counts"]
    assert counts["approved"] == 2
    for bad in ({"ids": [], "status": "spam"}, {"ids": ["1"], "status": "spam"}, {"ids": [1], "status": "x"},
                {"ids": [2**63], "status": "spam"}, {"ids": list(range(1, 1002)), "status": "spam"}, {}):
        assert (await mod.post("/api/admin/comments/bulk", json=bad)).status_code == 422, bad


async def test_delete_reattaches_replies(clients: Clients, mod: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    top = (await post(clients)).json()["id"]
    await approve(mod, top)
    middle = (await post(clients, parent=top)).json()["id"]
    await approve(mod, middle)
    leaf = (await post(clients, parent=middle)).json()["id"]
    await approve(mod, leaf)
    assert (await mod.delete(f"/api/admin/comments/{middle}")).status_code == 204
    assert (await mod.delete(f"/api/admin/comments/{middle}")).status_code == 404
    [thread] = (await client.get("/api/comments", params={"page": "/p/1"})).json()["comments"]
    assert [(r["id"], r["parent"]) for r in thread["replies"]] == [(leaf, top)]
    assert (await mod.get(f"/api/admin/comments/{leaf}")).json()["parent"] == top


async def test_rules_get_and_put(clients: Clients, mod: httpx.AsyncClient) -> None:
    defaults = (await mod.get("/api/admin/rules")).json()
    assert defaults == {"moderation": "all", "moderation_words": [], "blocked_words": [], "max_links": 2,
                        "auto_approve_known_authors": False, "flood_seconds": 15, "edit_window_seconds": 900,
                        "spam_threshold": 0.5, "hold_threshold": 0.2}
    new = {**defaults, "moderation": "rules", "moderation_words": ["casino", " casino "], "max_links": 0}
    saved = (await mod.put("/api/admin/rules", json=new)).json()
    assert saved["moderation_words"] == ["casino"]
    assert (await mod.get("/api/admin/rules")).json() == saved
    assert (await post(clients, body="see https://example.com")).json()["status"] == "pending"
    assert (await post(clients, body="fine words")).json()["status"] == "approved"
    partial = await mod.put("/api/admin/rules", json={"moderation": "all"})
    assert partial.status_code == 422 and len(partial.json()["error"]["fields"]) == 8


async def test_known_authors_skip_the_queue(clients: Clients, mod: httpx.AsyncClient) -> None:
    rules = (await mod.get("/api/admin/rules")).json()
    await mod.put("/api/admin/rules", json={**rules, "auto_approve_known_authors": True, "flood_seconds": 0})
    first = await post(clients, email="known@example.org", body="one")
    assert first.status_code == 202
    await approve(mod, first.json()["id"])
    second = await post(clients, email="KNOWN@example.org", body="two")
    assert second.status_code == 201


async def test_pages_list_close_and_open(clients: Clients, mod: httpx.AsyncClient) -> None:
    await post(clients, page="/a")
    await approve(mod, (await post(clients, page="/a")).json()["id"])
    await post(clients, page="/b")
    pages = (await mod.get("/api/admin/pages")).json()
    assert pages == {"items": [
        {"page": "/a", "closed": False, "counts": {"pending": 1, "approved": 1, "spam": 0, "trash": 0}},
        {"page": "/b", "closed": False, "counts": {"pending": 1, "approved": 0, "spam": 0, "trash": 0}}],
        "next": None}
    first = (await mod.get("/api/admin/pages", params={"limit": "1"})).json()
    assert [p["page"] for p in first["items"]] == ["/a"]
    second = (await mod.get("/api/admin/pages", params={"limit": "1", "cursor": first["next"]})).json()
    assert [p["page"] for p in second["items"]] == ["/b"] and second["next"] is None
    closed = await mod.patch("/api/admin/pages", params={"page": "/b"}, json={"closed": True})
    assert closed.json()["closed"] is True
    assert (await post(clients, page="/b")).status_code == 403
    for params, body in (({}, {"closed": True}), ({"page": "/b"}, {"closed": "yes"}), ({"page": "/b"}, {})):
        assert (await mod.patch("/api/admin/pages", params=params, json=body)).status_code == 422
