"""Webhooks: the signature as a receiver checks it, refusing private addresses, the admin API, and
delivery to a real HTTP receiver on loopback (retries, failure, retry from the admin API)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from comments import store
from comments.notify import webhooks
from comments.notify.worker import Worker
from comments.service import Service
from comments.store import outbox
from conftest import READER_IP, Clients, approve, post
from test_notify_worker import LOOPBACK, Receiver, hook, receiver  # noqa: F401 (receiver is a fixture)

SECRET = "whsec-0123456789abcdef"
LOCAL = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK)


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The README's verification example, as a receiver would write it (no import from comments)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


# ---- pure -------------------------------------------------------------------------------------


def test_the_signature_covers_timestamp_and_body() -> None:
    body = b'{"type": "comment.created"}'
    now = int(time.time())
    header = webhooks.signature_header(SECRET, now, body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert webhooks.verify(SECRET, header, body, now) and verify_signature(SECRET, header, body)
    assert not webhooks.verify("another-secret-entirely", header, body, now)
    assert not webhooks.verify(SECRET, header, body + b" ", now)
    assert not webhooks.verify(SECRET, header, body, now + 301)  # a replay, later
    assert not webhooks.verify(SECRET, header.replace(f"t={now}", f"t={now + 1}"), body, now)
    assert not verify_signature(SECRET, webhooks.signature_header(SECRET, now - 3600, body), body)


@pytest.mark.parametrize("url", [
    "ftp://hooks.example/x", "javascript:alert(1)", "http://", "https://user:pw@hooks.example/",
    "http://127.0.0.1:8080/", "http://10.1.2.3/", "http://192.168.0.1/", "http://172.16.5.5/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[fe80::1]/", "http://[fd00::1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://[::ffff:127.0.0.1]/", "http://localhost:8000/",
    "http://api.localhost/", "http://hooks.example/a b", "https://hooks.example:99999/", 42, None,
])
def test_urls_that_are_refused(url: Any) -> None:
    assert webhooks.url_problem(url, ()) is not None


def test_allowed_networks_open_private_ranges_explicitly() -> None:
    assert webhooks.url_problem("https://hooks.example/in", ()) is None
    assert webhooks.url_problem("http://127.0.0.1:8080/", LOCAL) is None
    assert webhooks.url_problem("http://localhost:8080/", LOCAL) is None
    assert webhooks.url_problem("http://10.0.0.1/", LOCAL) is not None
    for address in ("::ffff:127.0.0.1", "64:ff9b::7f00:1", "224.0.0.1", "::", "198.18.0.1"):
        assert webhooks.refused(ipaddress.ip_address(address), ())
    assert not webhooks.refused(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL)
    assert not webhooks.refused(ipaddress.ip_address("93.184.216.34"), ())


def test_a_name_that_resolves_to_loopback_is_refused_when_sent() -> None:
    with pytest.raises(webhooks.WebhookError) as caught:
        webhooks.resolve("localhost", 80, ())
    assert caught.value.permanent
    assert webhooks.resolve("localhost", 80, LOCAL) in ("127.0.0.1", "::1")


# ---- the admin API ------------------------------------------------------------------------------


async def test_webhooks_admin_api(clients: Clients, mod: httpx.AsyncClient, receiver: Receiver) -> None:
    anonymous = clients.client()
    for method, path in (("get", "/api/admin/webhooks"), ("post", "/api/admin/webhooks"),
                         ("delete", "/api/admin/webhooks/1"), ("get", "/api/admin/outbox"),
                         ("post", "/api/admin/outbox/1/retry")):
        assert (await anonymous.request(method, path, json={})).status_code == 401
    bad = await mod.post("/api/admin/webhooks", json={"url": "gopher://x", "events": ["comment.eaten"],
                                                      "secret": "short"})
    assert bad.status_code == 422
    assert set(bad.json()["error"]["fields"]) == {"url", "events", "secret"}
    made = await mod.post("/api/admin/webhooks", json={"url": receiver.url, "events": ["comment.created"]})
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert len(secret) >= 32
    given = await mod.post("/api/admin/webhooks", json={"url": receiver.url, "events": list(outbox.EVENTS),
                                                        "secret": SECRET})
    assert given.json()["secret"] == SECRET
    listed = (await mod.get("/api/admin/webhooks")).json()
    assert [h["id"] for h in listed["items"]] == [made.json()["id"], given.json()["id"]]
    assert SECRET not in str(listed) and secret not in str(listed)
    assert (await mod.delete(f"/api/admin/webhooks/{made.json()['id']}")).status_code == 204
    assert (await mod.delete(f"/api/admin/webhooks/{made.json()['id']}")).status_code == 404
    assert (await mod.delete("/api/admin/webhooks/x")).status_code == 404
    audit = (await mod.get("/api/admin/audit", params={"action": "webhook_add"})).json()["items"]
    assert len(audit) == 2 and SECRET not in str(audit)


async def test_private_addresses_are_refused_unless_allowed(mod: httpx.AsyncClient, receiver: Receiver,
                                                            service: Service, clients: Clients) -> None:
    # Allowed in this module's settings: loopback only.
    refused = await mod.post("/api/admin/webhooks", json={"url": "http://10.0.0.8/hook", "events": ["comment.created"]})
    assert refused.status_code == 422 and "private" in refused.json()["error"]["fields"]["url"]
    # A webhook stored before the allowance was withdrawn: refused when sent, and never retried.
    strict = Service(service.settings.model_copy(update={"webhook_allowed_networks": ()}))
    try:
        hook(service, receiver, ("comment.created",))
        await post(clients)
        Worker(strict).run_once()
    finally:
        strict.db.dispose()
    assert receiver.requests == []
    failed = (await mod.get("/api/admin/outbox", params={"status": "failed"})).json()["items"]
    assert len(failed) == 1 and failed[0]["last_error"].startswith("refused")


# ---- delivery to a real receiver ----------------------------------------------------------------


async def test_events_arrive_signed_and_without_personal_data(
    clients: Clients, mod: httpx.AsyncClient, service: Service, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    hook(service, receiver, secret=SECRET)
    email = "private.person@example.org"
    first = (await client.post("/api/comments", json={"page": "/w/1", "body": "Hello hooks.", "author": "Ann",
                                                      "email": email, "url": "ann.example", "notify": True})).json()
    second = (await post(clients, page="/w/1", body="Another one.")).json()
    third = (await post(clients, page="/w/1", body="And a third.")).json()
    await approve(mod, first["id"])
    assert (await mod.post("/api/admin/comments/bulk", json={"ids": [second["id"]], "status": "spam"})).status_code == 200
    await mod.patch(f"/api/admin/comments/{third['id']}", json={"status": "trash"})
    await mod.patch(f"/api/admin/comments/{first['id']}", json={"status": "pending"})  # no event for this
    assert (await mod.delete(f"/api/admin/comments/{third['id']}")).status_code == 204
    worker = Worker(service)
    assert worker.drain() == 7
    got = receiver.ok()
    kinds = [(e["type"], e["comment"]["id"]) for e in receiver.events()]
    assert kinds == [("comment.created", first["id"]), ("comment.created", second["id"]),
                     ("comment.created", third["id"]), ("comment.approved", first["id"]),
                     ("comment.spam", second["id"]), ("comment.trashed", third["id"]),
                     ("comment.deleted", third["id"])]
    for request in got:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert verify_signature(SECRET, headers["x-comments-signature"], request["body"])
        event = receiver.events()[got.index(request)]
        assert headers["x-comments-delivery"] == event["id"]
        assert headers["x-comments-event"] == event["type"]
        assert headers["content-type"] == "application/json"
        assert headers["host"].startswith("127.0.0.1:")
        text = request["body"].decode()
        for secret in (email, "private.person", READER_IP, "198.51.100.0", "192.0.2."):
            assert secret not in text
    created = receiver.events()[0]["comment"]
    assert set(created) == {"id", "page", "parent", "status", "author", "url", "body_html", "created_at",
                            "spam_score", "spam_reasons"}
    assert created["url"] == "https://ann.example" and created["status"] == "pending"
    assert worker.drain() == 0  # nothing twice


async def test_a_receiver_that_fails_three_times_gets_the_event_once(
    clients: Clients, service: Service, receiver: Receiver
) -> None:
    hook(service, receiver, ("comment.created",))
    receiver.script = [500, 500, 500]
    await post(clients)
    worker = Worker(service)
    now = store.utcnow()
    waits = []
    for attempt in range(1, 5):
        assert worker.run_once(now) == 1
        assert worker.run_once(now) == 0  # the next try waits
        with service.db.read() as conn:
            row = conn.execute(outbox.outbox_t.select()).one()
        assert row.attempts == attempt
        if attempt < 4:
            assert (row.status, row.last_error) == ("pending", "HTTP 500")
            waits.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
    assert (row.status, row.delivered_at is not None) == ("done", True)
    assert 15 <= waits[0] <= 30 and waits[0] < waits[1] < waits[2]  # exponential, with jitter
    assert len(receiver.requests) == 4 and len(receiver.ok()) == 1
    assert len({r["headers"]["X-Comments-Delivery"] for r in receiver.requests}) == 1


@pytest.mark.parametrize("settings_overrides", [{**LOOPBACK, "outbox_max_tries": 3}])
async def test_failed_deliveries_are_listed_and_retried_from_the_admin_api(
    clients: Clients, mod: httpx.AsyncClient, service: Service, receiver: Receiver
) -> None:
    hook(service, receiver, ("comment.created",))
    receiver.script = [503, 302, 404]
    await post(clients)
    worker = Worker(service)
    now = store.utcnow()
    for _ in range(3):
        worker.run_once(now)
        now += timedelta(hours=7)
    assert [r["status"] for r in receiver.requests] == [503, 302, 404]  # a redirect is not followed
    failed = await mod.get("/api/admin/outbox", params={"status": "failed"})
    assert failed.status_code == 200
    body = failed.json()
    assert body["counts"]["failed"] == 1 and body["next"] is None
    (item,) = body["items"]
    assert (item["kind"], item["event"], item["attempts"], item["last_error"]) == (
        "webhook", "comment.created", 3, "HTTP 404")
    assert worker.run_once(now + timedelta(days=30)) == 0  # failed stays failed
    assert (await mod.get("/api/admin/outbox", params={"status": "lost"})).status_code == 422
    assert (await mod.post("/api/admin/outbox/999/retry")).status_code == 404
    retried = await mod.post(f"/api/admin/outbox/{item['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert worker.run_once() == 1
    assert len(receiver.ok()) == 1
    assert (await mod.get("/api/admin/outbox", params={"status": "done"})).json()["items"][0]["id"] == item["id"]
    audit = (await mod.get("/api/admin/audit", params={"action": "outbox_retry"})).json()["items"]
    assert audit and audit[0]["actor"] == "moderator"


async def test_removing_a_webhook_drops_what_it_had_not_received(
    clients: Clients, mod: httpx.AsyncClient, service: Service, receiver: Receiver
) -> None:
    hook_id = hook(service, receiver, ("comment.created",))
    await post(clients)
    assert (await mod.delete(f"/api/admin/webhooks/{hook_id}")).status_code == 204
    assert Worker(service).drain() == 0
    assert receiver.requests == []
    await post(clients)  # no subscriber, no event
    with service.db.read() as conn:
        assert [r.last_error for r in conn.execute(outbox.outbox_t.select()).all()] == ["webhook removed"]
