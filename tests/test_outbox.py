"""The outbox in the database: events written in the same transaction as the comment, the claim,
backoff, the digest gathering, pruning, and what an event may never carry."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from comments import forms, store
from comments.service import Service
from comments.store import outbox, subscriptions
from conftest import READER_IP, Clients, approve, comment, post

MAIL: dict[str, Any] = {
    "smtp_host": "127.0.0.1", "smtp_port": 9, "smtp_security": "none", "mail_from": "comments@blog.example",
    "public_url": "https://comments.example", "moderator_emails": "mod@blog.example,two@blog.example",
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(MAIL)


def rows(service: Service) -> list[Any]:
    with service.db.read() as conn:
        return conn.execute(sa.select(outbox.outbox_t).order_by(outbox.outbox_t.c.id)).all()


def kinds(service: Service) -> Counter[str]:
    return Counter(r.kind if r.kind != outbox.WEBHOOK else r.payload["type"] for r in rows(service))


def add_hook(service: Service, events: tuple[str, ...] = outbox.EVENTS) -> int:
    made = outbox.add_webhook(service.db, "https://hooks.example/in", list(events), "s" * 20, "moderator",
                              store.utcnow())
    return int(made["id"])


# ---- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "wanted"), [
    ("1", True), ("on", True), ("true", True), ("yes", True), (" On ", True), (True, True), (1, True),
    ("0", False), ("", False), ("off", False), (False, False), (None, False), (0, False), ([], False), ("2", False),
])
def test_the_notify_field(value: Any, wanted: bool) -> None:
    fields = {} if value is None else {"notify": value}
    assert forms.notify_requested(fields) is wanted


def test_backoff_doubles_up_to_a_cap_with_jitter() -> None:
    low = [outbox.backoff(n, 0.0) for n in range(1, 12)]
    high = [outbox.backoff(n, 0.999) for n in range(1, 12)]
    assert low[:4] == [15.0, 30.0, 60.0, 120.0]
    assert all(a < b for a, b in zip(low, high))
    assert max(high) <= 6 * 3600 and high[-1] > 6 * 3600 * 0.99


# ---- written with the comment, in its transaction ----------------------------------------------


async def test_a_new_comment_writes_its_events(clients: Clients, service: Service) -> None:
    add_hook(service, ("comment.created",))
    posted = await post(clients, page="/o/1")
    assert posted.status_code == 202
    assert kinds(service) == Counter({"comment.created": 1, outbox.HELD: 2})
    created = next(r for r in rows(service) if r.kind == outbox.WEBHOOK)
    assert created.payload["type"] == "comment.created" and created.payload["id"] == created.event_id
    assert created.payload["comment"]["id"] == posted.json()["id"] == created.comment_id
    held = [r for r in rows(service) if r.kind == outbox.HELD]
    assert {r.target for r in held} == {outbox.moderator_target(service.db, a) for a in MAIL["moderator_emails"].split(",")}
    assert all(r.status == "pending" and r.attempts == 0 and r.payload == {"comment_id": created.comment_id}
               for r in held)


async def test_no_comment_no_event(clients: Clients, service: Service, client: httpx.AsyncClient,
                                   mod: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    add_hook(service)
    fields = comment(page="/o/2")
    assert (await client.post("/api/comments", json=fields)).status_code == 202
    before = len(rows(service))
    assert (await clients.client().post("/api/comments", json=fields)).status_code == 409  # duplicate
    await mod.patch("/api/admin/pages", params={"page": "/o/2"}, json={"closed": True})
    assert (await post(clients, page="/o/2")).status_code == 403
    assert len(rows(service)) == before

    # A failure after the events were written takes them back with the comment.
    real = outbox.comment_created

    def then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(outbox, "comment_created", then_fail)
    failed = await post(clients, page="/o/3")
    assert failed.status_code == 500
    assert len(rows(service)) == before
    assert (await mod.get("/api/admin/pages")).json()["items"][-1]["page"] == "/o/2"


async def test_moderation_writes_its_events(clients: Clients, mod: httpx.AsyncClient, service: Service) -> None:
    add_hook(service)
    ids = [(await post(clients, page="/o/4")).json()["id"] for _ in range(4)]
    await approve(mod, ids[0])
    await approve(mod, ids[0])  # no change, no event
    await mod.patch(f"/api/admin/comments/{ids[0]}", json={"body": "Edited by a moderator."})  # no event
    await mod.post("/api/admin/comments/bulk", json={"ids": [ids[1], ids[2], 999], "status": "spam"})
    await mod.patch(f"/api/admin/comments/{ids[3]}", json={"status": "trash"})
    await mod.patch(f"/api/admin/comments/{ids[0]}", json={"status": "pending"})  # not an event
    await mod.delete(f"/api/admin/comments/{ids[1]}")
    assert kinds(service) == Counter({"comment.created": 4, outbox.HELD: 8, "comment.approved": 1,
                                      "comment.spam": 2, "comment.trashed": 1, "comment.deleted": 1})
    deleted = next(r for r in rows(service) if r.kind == outbox.WEBHOOK and r.payload["type"] == "comment.deleted")
    assert deleted.payload["comment"] == {"id": ids[1], "page": "/o/4", "parent": None, "status": "spam"}


async def test_events_never_carry_an_address(clients: Clients, mod: httpx.AsyncClient, service: Service) -> None:
    add_hook(service)
    email = "someone.private@example.org"
    first = (await clients.client(READER_IP).post("/api/comments", json=comment(
        page="/o/5", email=email, notify=True))).json()
    await approve(mod, first["id"])
    reply = (await post(clients, page="/o/5", parent=first["id"])).json()
    await approve(mod, reply["id"])
    await mod.delete(f"/api/admin/comments/{reply['id']}")
    assert {outbox.CONFIRM, outbox.REPLY} <= set(kinds(service))
    with service.db.read() as conn:
        dumped = str(conn.execute(sa.select(outbox.outbox_t)).all())
    for value in (email, "someone.private", READER_IP, "198.51.100.0", "192.0.2."):
        assert value not in dumped


async def test_without_mail_settings_only_webhooks_are_written(
    clients: Clients, service: Service, settings_overrides: dict[str, Any]
) -> None:
    plain = Service(service.settings.model_copy(update={"smtp_host": None}))
    try:
        from comments.models import CommentIn

        add_hook(service, ("comment.created",))
        plain.create_comment(CommentIn(page="/o/6", body="No mail here.", author="Ann", email="a@example.org"),
                             "192.0.2.5", None, notify=True)
    finally:
        plain.db.dispose()
    assert kinds(service) == Counter({"comment.created": 1})
    assert subscriptions.subscription_state(service.db, "a@example.org")["watching"] == 1


# ---- subscriptions ------------------------------------------------------------------------------


async def test_one_subscription_per_address_and_one_confirmation_a_day(
    clients: Clients, mod: httpx.AsyncClient, service: Service
) -> None:
    rules = (await mod.get("/api/admin/rules")).json()
    await mod.put("/api/admin/rules", json={**rules, "flood_seconds": 0})
    for n in range(3):
        answer = await clients.client().post("/api/comments", json=comment(
            page=f"/o/s{n}", email="Same.Person@Example.org", notify=True))
        assert answer.status_code == 202
    state = subscriptions.subscription_state(service.db, "same.person@example.org")
    assert state["watching"] == 3 and state["confirmed_at"] is None
    assert kinds(service)[outbox.CONFIRM] == 1
    later = store.utcnow() + timedelta(hours=25)
    from comments.models import CommentIn

    service.create_comment(CommentIn(page="/o/s9", body="Next day.", author="Same", email="same.person@example.org"),
                           "192.0.2.9", None, now=later, notify=True)
    assert kinds(service)[outbox.CONFIRM] == 2


def test_used_links_work_once_and_are_forgotten_after_expiry(service: Service) -> None:
    now = store.utcnow()
    expires = now + timedelta(hours=1)
    assert subscriptions.use_link(service.db, "d" * 64, now, expires)
    assert not subscriptions.use_link(service.db, "d" * 64, now, expires)
    assert subscriptions.link_used(service.db, "d" * 64)
    assert subscriptions.prune_links(service.db, now + timedelta(hours=2)) == 1
    assert not subscriptions.link_used(service.db, "d" * 64)


# ---- the claim ----------------------------------------------------------------------------------


async def test_claims_are_exclusive(clients: Clients, service: Service) -> None:
    add_hook(service, ("comment.created",))
    for n in range(6):
        await post(clients, page=f"/o/c{n}")
    now = store.utcnow()
    assert outbox.due(service.db, now) == (True, False)
    results: dict[str, list[int]] = {}

    def take(name: str) -> None:
        results[name] = [item.id for item in outbox.claim(service.db, name, now, 10, 60)]

    threads = [threading.Thread(target=take, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [i for ids in results.values() for i in ids]
    assert len(taken) == len(set(taken)) == 18  # 6 webhooks and 12 moderator mails, each once
    assert outbox.claim(service.db, "late", now, 10, 60) == []
    assert outbox.due(service.db, now) == (False, False)
    assert outbox.due(service.db, now + timedelta(seconds=61)) == (True, False)  # the claims lapse


async def test_finish_retries_then_fails_and_prune_forgets_done(clients: Clients, service: Service) -> None:
    add_hook(service, ("comment.created",))
    await post(clients, page="/o/f")
    now = store.utcnow()
    webhook_only = sa.select(outbox.outbox_t).where(outbox.outbox_t.c.kind == outbox.WEBHOOK)
    for attempt in range(1, 4):
        taken = outbox.claim(service.db, f"c{attempt}", now, 10, 60)
        for mail_item in [i for i in taken if i.kind != outbox.WEBHOOK]:
            assert outbox.finish(service.db, mail_item, now) == "done"
        (item,) = [i for i in taken if i.kind == outbox.WEBHOOK]
        status = outbox.finish(service.db, item, now, "HTTP 500", max_tries=3, jitter=0.0)
        assert status == ("pending" if attempt < 3 else "failed")
        with service.db.read() as conn:
            row = conn.execute(webhook_only).one()
        if attempt < 3:
            assert row.next_attempt_at == now + timedelta(seconds=outbox.backoff(attempt, 0.0))
            now = row.next_attempt_at
    assert row.status == "failed" and row.last_error == "HTTP 500"
    assert outbox.claim(service.db, "d", now + timedelta(days=1), 10, 60) == []  # failed is not due
    assert outbox.prune(service.db, now + timedelta(days=8)) == 2  # the two mails, done a week ago
    assert [r.status for r in rows(service)] == ["failed"]  # kept for moderators


class TestDigest:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**MAIL, "digest_minutes": 15}

    async def test_digest_items_land_in_exactly_one_digest(self, clients: Clients, service: Service) -> None:
        for n in range(5):
            await post(clients, page=f"/o/d{n}")
        items = [r for r in rows(service) if r.kind == outbox.DIGEST_ITEM]
        assert len(items) == 10 and {r.next_attempt_at.minute % 15 for r in items} == {0}
        now = store.utcnow()
        assert outbox.due(service.db, now) == (False, False)
        assert outbox.claim(service.db, "early", now + timedelta(hours=1), 50, 60) == []  # never claimed alone
        later = max(r.next_attempt_at for r in items)
        assert outbox.due(service.db, later) == (False, True)
        made: list[int] = []
        threads = [threading.Thread(target=lambda: made.append(outbox.gather_digests(service.db, later)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(made) == [0, 0, 2]
        digests = [r for r in rows(service) if r.kind == outbox.DIGEST]
        assert sorted(len(r.payload["comment_ids"]) for r in digests) == [5, 5]
        assert len({r.target for r in digests}) == 2


async def test_a_subscription_is_erased_and_rotated_with_its_address(clients: Clients, service: Service) -> None:
    from comments.crypto import new_key
    from comments.models import CommentIn
    from conftest import TEST_EMAIL_KEY

    for n, address in enumerate(("keep@example.org", "erase@example.org")):
        service.create_comment(CommentIn(page="/o/k", body=f"Watch {n}.", author="A", email=address),
                               f"192.0.2.{30 + n}", None, notify=True)
    with service.db.write() as conn:
        assert subscriptions.forget(conn, store.email_lookups(service.db, "erase@example.org")) == 1
    assert subscriptions.subscription_state(service.db, "erase@example.org") is None
    rotated = Service(service.settings.model_copy(update={"email_key": f"{new_key()},{TEST_EMAIL_KEY}"}))
    try:
        assert subscriptions.rotate_batch(rotated.db) == 1
        assert subscriptions.rotate_batch(rotated.db) == 0
        with rotated.db.read() as conn:
            stored = conn.execute(sa.select(subscriptions.subscription_t.c.email)).scalar_one()
        assert rotated.db.keyring().is_current(stored)
        assert subscriptions.subscription_state(rotated.db, "keep@example.org")["watching"] == 1
    finally:
        rotated.db.dispose()
