"""The moderators' web page, erasure and key rotation are wired to the outbox and subscriptions."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from conftest import Clients, comment, post

from comments import store
from comments.store import guarded
from comments.store.outbox import outbox_t
from comments.store.subscriptions import subscription_t


def events(service: Any) -> list[tuple[int, str]]:
    with service.db.read() as conn:
        return [(r.comment_id, r.payload["type"]) for r in conn.execute(
            sa.select(outbox_t.c.comment_id, outbox_t.c.payload).order_by(outbox_t.c.id))]


async def hook_everything(mod: httpx.AsyncClient) -> None:
    made = await mod.post("/api/admin/webhooks", json={
        "url": "https://hooks.example/comments",
        "events": ["comment.created", "comment.approved", "comment.spam", "comment.trashed", "comment.deleted"]})
    assert made.status_code in (200, 201), made.text


async def test_web_page_moves_and_site_replies_write_events(clients: Clients, mod: httpx.AsyncClient,
                                                            service: Any) -> None:
    await hook_everything(mod)
    comment_id = (await post(clients)).json()["id"]
    before = len(events(service))
    guarded.set_status(service.db, comment_id, "approved", "pending", "moderator", store.utcnow())
    reply = guarded.site_reply(service.db, guarded.SiteReply(
        parent=comment_id, expected="approved", author="The Editor", body="Thanks!",
        body_html="<p>Thanks!</p>", policy_version=1), "moderator", store.utcnow())
    added = events(service)[before:]
    assert (comment_id, "comment.approved") in added
    assert (reply["id"], "comment.created") in added


async def test_erasing_a_person_removes_their_reply_notice_subscription(clients: Clients, mod: httpx.AsyncClient,
                                                                        service: Any) -> None:
    email = "watcher@example.org"
    created = await clients.client().post("/api/comments", json={**comment(email=email), "notify": True})
    assert created.status_code == 202
    assert store.subscriptions.subscription_state(service.db, email) is not None
    exported = (await mod.get("/api/admin/people", params={"email": email})).json()
    assert exported["reply_notices"] is not None
    assert (await mod.delete("/api/admin/people", params={"email": email})).json() == {"erased": 1}
    assert store.subscriptions.subscription_state(service.db, email) is None
    with service.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(subscription_t)).scalar_one() == 0


async def test_rotation_counts_and_moves_subscribers_too(clients: Clients, settings: Any, service: Any) -> None:
    from conftest import TEST_EMAIL_KEY

    from comments.crypto import new_key
    from comments.db import Database

    created = await clients.client().post("/api/comments", json={**comment(email="sub@example.org"), "notify": True})
    assert created.status_code == 202
    rotated = Database(settings.model_copy(update={"email_key": f"{new_key()},{TEST_EMAIL_KEY}"}))
    try:
        assert store.remaining(rotated) == 2  # the comment's address and the subscriber's
        while store.rotate_batch(rotated):
            pass
        assert store.remaining(rotated) == 0
        assert store.subscriptions.subscription_state(rotated, "sub@example.org") is not None
    finally:
        rotated.dispose()
