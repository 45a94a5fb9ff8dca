"""The periodic upkeep: old spam and trash purged (by the task and by `comments purge`), expired
personal data anonymised, one worker at a time through a lease, started and stopped by the lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import Clients, approve, command_line_environment, post

from comments import sanitize, store
from comments.app import upkeep_loop
from comments.cli import main
from comments.models import CommentIn, Lease
from comments.store import maintenance

lease_t: sa.Table = Lease.__table__  # type: ignore[attr-defined]
DAY = timedelta(days=1)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ip_retention_days": 7}


async def no_flood(mod: httpx.AsyncClient) -> None:
    current = (await mod.get("/api/admin/rules")).json()
    assert (await mod.put("/api/admin/rules", json={**current, "flood_seconds": 0})).status_code == 200


async def leave(clients: Clients, **fields: Any) -> int:
    r = await post(clients, **fields)
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def exists(service: Any, comment_id: int) -> bool:
    try:
        store.get_full(service.db, comment_id)
    except Exception:  # noqa: BLE001 - the store's 404
        return False
    return True


def set_status(service: Any, comment_id: int, status: str, when: Any) -> None:
    """A moderator's status change at a given moment (which becomes the comment's updated_at)."""
    store.change_comment(service.db, comment_id, store.Change(status=status), "moderator", when)


# ---- 4. retention ----------------------------------------------------------------------------


async def test_old_spam_and_trash_are_purged_and_nothing_else(clients: Clients, mod: httpx.AsyncClient,
                                                              service: Any) -> None:
    now = store.utcnow()
    ids = {name: await leave(clients) for name in
           ("old_spam", "old_trash", "young_spam", "young_trash", "old_pending", "old_approved", "edge_trash")}
    set_status(service, ids["old_spam"], "spam", now - 31 * DAY)
    set_status(service, ids["old_trash"], "trash", now - 45 * DAY)
    set_status(service, ids["young_spam"], "spam", now - 29 * DAY)
    set_status(service, ids["young_trash"], "trash", now - 1 * DAY)
    set_status(service, ids["edge_trash"], "trash", now - 30 * DAY + timedelta(minutes=5))
    set_status(service, ids["old_approved"], "approved", now - 400 * DAY)
    edit = store.Change(body="Edited long ago.", body_html=sanitize.render("Edited long ago."),
                        policy_version=sanitize.POLICY_VERSION)
    store.change_comment(service.db, ids["old_pending"], edit, "moderator", now - 400 * DAY)
    done = store.run_upkeep(service.db, now)
    assert done.purged == 2
    gone = {name for name, comment_id in ids.items() if not exists(service, comment_id)}
    assert gone == {"old_spam", "old_trash"}
    assert store.run_upkeep(service.db, now).purged == 0
    # months later, only the spam and trash go; pending and approved stay for ever
    assert store.run_upkeep(service.db, now + 400 * DAY).purged == 3
    gone = {name for name, comment_id in ids.items() if not exists(service, comment_id)}
    assert gone == {"old_spam", "old_trash", "young_spam", "young_trash", "edge_trash"}
    # the record says who deleted them: the retention, from which status
    items, _ = store.read_audit(service.db, actor="retention", limit=50)
    assert sorted((i["action"], i["comment_id"], i["from"]) for i in items) == sorted(
        ("delete", ids[name], name.split("_")[1]) for name in gone)


@pytest.mark.parametrize("settings_overrides", [{"retention_days": 0}])
async def test_retention_0_never_deletes(clients: Clients, service: Any) -> None:
    now = store.utcnow()
    spam, trash = await leave(clients), await leave(clients)
    set_status(service, spam, "spam", now - 5000 * DAY)
    set_status(service, trash, "trash", now - 5000 * DAY)
    assert store.run_upkeep(service.db, now + 5000 * DAY).purged == 0
    assert exists(service, spam) and exists(service, trash)


@pytest.mark.parametrize("settings_overrides", [{"retention_days": 7}])
async def test_the_retention_is_configurable(clients: Clients, service: Any) -> None:
    now = store.utcnow()
    old, young = await leave(clients), await leave(clients)
    set_status(service, old, "spam", now - 8 * DAY)
    set_status(service, young, "spam", now - 6 * DAY)
    assert store.run_upkeep(service.db, now).purged == 1
    assert not exists(service, old) and exists(service, young)


async def thread_of_three(clients: Clients, mod: httpx.AsyncClient) -> tuple[int, int, int]:
    """A top-level comment, a reply to it and a reply to that, all approved."""
    top = await leave(clients, page="/purge/")
    await approve(mod, top)
    middle = await leave(clients, page="/purge/", parent=top)
    await approve(mod, middle)
    bottom = await leave(clients, page="/purge/", parent=middle)
    await approve(mod, bottom)
    return top, middle, bottom


async def test_replies_to_a_purged_comment_are_reattached(clients: Clients, mod: httpx.AsyncClient,
                                                         service: Any) -> None:
    await no_flood(mod)
    top, middle, bottom = await thread_of_three(clients, mod)
    set_status(service, middle, "trash", store.utcnow() - 60 * DAY)
    assert store.run_upkeep(service.db, store.utcnow()).purged == 1
    assert store.get_full(service.db, bottom)["parent"] == top
    thread = (await clients.client().get("/api/comments", params={"page": "/purge/"})).json()
    assert [c["id"] for c in thread["comments"]] == [top]
    assert [r["id"] for r in thread["comments"][0]["replies"]] == [bottom]


async def test_a_comment_and_its_parent_purged_together(clients: Clients, mod: httpx.AsyncClient,
                                                       service: Any) -> None:
    """A reply is re-attached to its parent as it is when it is purged, not as the batch first read it."""
    await no_flood(mod)
    top, middle, bottom = await thread_of_three(clients, mod)
    set_status(service, top, "spam", store.utcnow() - 60 * DAY)
    set_status(service, middle, "trash", store.utcnow() - 60 * DAY)
    assert store.run_upkeep(service.db, store.utcnow()).purged == 2
    assert store.get_full(service.db, bottom)["parent"] is None


# ---- `comments purge` ------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[pytest.MonkeyPatch]:
    """An in-process `comments` command's environment (conftest.command_line_environment)."""
    with command_line_environment(monkeypatch, tmp_path, database_url):
        yield monkeypatch


@pytest.mark.parametrize(("days", "deleted"), [(None, {0, 1}), ("0", set()), ("100", {1})])
async def test_comments_purge(clients: Clients, service: Any, cli: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], days: str | None, deleted: set[int]) -> None:
    now = store.utcnow()
    ids = [await leave(clients) for _ in range(5)]
    set_status(service, ids[0], "spam", now - 40 * DAY)
    set_status(service, ids[1], "trash", now - 200 * DAY)
    set_status(service, ids[2], "trash", now - 2 * DAY)
    set_status(service, ids[3], "approved", now - 900 * DAY)
    service.db.dispose()
    if days is not None:
        cli.setenv("COMMENTS_RETENTION_DAYS", days)
    capsys.readouterr()
    assert main(["purge"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {len(deleted)} old spam and trash" in out
    assert {n for n, comment_id in enumerate(ids) if not exists(service, comment_id)} == deleted


# ---- the lease: one worker at a time ---------------------------------------------------------


def test_take_lease_lets_one_holder_in_at_a_time(service: Any) -> None:
    db, now = service.db, store.utcnow()
    assert store.take_lease(db, "upkeep", "worker-a", now, 60)
    assert not store.take_lease(db, "upkeep", "worker-b", now + timedelta(seconds=10), 60)
    assert store.take_lease(db, "upkeep", "worker-a", now + timedelta(seconds=10), 60)  # renews to +70 s
    assert not store.take_lease(db, "upkeep", "worker-b", now + timedelta(seconds=61), 60)
    assert store.take_lease(db, "upkeep", "worker-b", now + timedelta(seconds=71), 60)  # a's has run out
    assert not store.take_lease(db, "upkeep", "worker-a", now + timedelta(seconds=72), 60)
    assert store.take_lease(db, "other-job", "worker-a", now + timedelta(seconds=72), 60)  # leases are per name


def test_take_lease_race_has_one_winner(service: Any) -> None:
    now = store.utcnow()
    holders = [f"worker-{n}" for n in range(6)]
    barrier = threading.Barrier(len(holders))
    won: dict[str, bool] = {}

    def attempt(holder: str) -> None:
        barrier.wait()
        won[holder] = store.take_lease(service.db, "race", holder, now, 60)

    threads = [threading.Thread(target=attempt, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == len(holders)
    assert sum(won.values()) == 1


# ---- the task inside `comments serve` --------------------------------------------------------


def upkeep_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "upkeep_loop"]


async def test_the_lifespan_starts_and_cancels_the_upkeep_task(app: Any) -> None:
    assert upkeep_tasks() == []
    async with app.router.lifespan_context(app):
        tasks = upkeep_tasks()
        assert len(tasks) == 1 and not tasks[0].done()
    await asyncio.wait(tasks, timeout=2)
    assert tasks[0].cancelled()
    assert upkeep_tasks() == []


def expired_comment(service: Any, ip: str = "192.0.2.77", days: int = 8) -> int:
    """A comment left some days ago (eight: with its full address kept for seven, due to be anonymised)."""
    data = CommentIn(page="/upkeep/", body=f"Left {days} days ago.", author="Ann", email="ann.upkeep@example.org")
    body_html = sanitize.render(data.body)
    new = store.NewComment(data=data, body_html=body_html, policy_version=sanitize.POLICY_VERSION, links=0,
                           ip=ip, user_agent="OldAgent/1.0", now=store.utcnow() - days * DAY)
    return int(store.create_comment(service.db, service.keys, new)["id"])


async def run_loop_briefly(service: Any, seconds: float = 0.5, until: Callable[[], bool] | None = None) -> None:
    """Run the upkeep loop for `seconds`, or, given `until`, until that holds (at most 15 s: a busy
    machine may take longer than half a second to get to the first run)."""
    task = asyncio.create_task(upkeep_loop(service, first_delay=0))
    await asyncio.sleep(seconds)
    waited = seconds
    while until is not None and not until() and waited < 15:
        await asyncio.sleep(0.05)
        waited += 0.05
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@pytest.mark.parametrize("settings_overrides", [{"ip_retention_days": 7, "maintenance_seconds": 5}])
async def test_the_upkeep_loop_runs_once_and_anonymises(service: Any, caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="comments.upkeep")
    comment_id = expired_comment(service)
    fresh = expired_comment(service, ip="192.0.2.88", days=6)
    runs: list[Any] = []
    real = store.run_upkeep
    monkeypatch.setattr(store, "run_upkeep", lambda db, now: runs.append(now) or real(db, now))
    assert store.get_full(service.db, comment_id)["ip"] == "192.0.2.77"
    await run_loop_briefly(service, until=lambda: any("1 anonymised" in r.getMessage() for r in caplog.records))
    assert len(runs) == 1
    full = store.get_full(service.db, comment_id)
    assert (full["ip"], full["user_agent"]) == ("192.0.2.0", None)
    assert store.get_full(service.db, fresh)["ip"] == "192.0.2.88"  # not due yet
    assert any("1 anonymised" in r.getMessage() for r in caplog.records)
    with service.db.read() as conn:
        lease = conn.execute(sa.select(lease_t).where(lease_t.c.name == "upkeep")).one()
    assert lease.holder == f"{socket.gethostname()}:{os.getpid()}"
    # another worker (another host) in the same period leaves it alone
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    await run_loop_briefly(service)
    assert len(runs) == 1


@pytest.mark.parametrize("settings_overrides", [{"maintenance_seconds": 5}])
async def test_the_upkeep_loop_survives_a_failure_without_leaking(service: Any, caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)

    def failing(*_args: Any) -> Any:
        raise RuntimeError("secret.reader@example.org wrote: a body")

    monkeypatch.setattr(store, "run_upkeep", failing)
    await run_loop_briefly(service, until=lambda: any("RuntimeError" in r.getMessage() for r in caplog.records))
    messages = [r.getMessage() for r in caplog.records if r.name == "comments.upkeep"]
    assert messages and all("example.org" not in m and "body" not in m for m in messages)
    assert any("RuntimeError" in m for m in messages)


# ---- an erase that lands inside an upkeep batch ---------------------------------------------


async def test_an_erase_during_anonymising_stays_erased(service: Any, monkeypatch: pytest.MonkeyPatch,
                                                       database_url: str) -> None:
    """An erase committed while a batch is being anonymised is not undone (compare-and-set)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers are serialised (BEGIN IMMEDIATE): an erase cannot land inside a batch")
    comment_id = expired_comment(service)
    real = maintenance.anonymise_ip
    erased: list[int] = []
    note = sanitize.render(store.people.ERASED_NOTE)
    eraser = threading.Thread(target=lambda: erased.append(
        store.erase_person(service.db, "ann.upkeep@example.org", True, note, "moderator", store.utcnow())))

    def anonymise_then_erase(value: str | None) -> str | None:
        if not eraser.is_alive() and not erased:
            eraser.start()
            eraser.join(timeout=1.0)
        return real(value)

    monkeypatch.setattr(maintenance, "anonymise_ip", anonymise_then_erase)
    try:
        store.run_upkeep(service.db, store.utcnow())
    finally:
        eraser.join(timeout=15)
    assert erased == [1]
    full = store.get_full(service.db, comment_id)
    assert (full["author"], full["ip"], full["user_agent"]) == ("Anonymous", None, None)
