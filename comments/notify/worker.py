"""The delivery worker: claims due outbox rows, sends each mail or webhook request, records the outcome."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.concurrency import run_in_threadpool

from .. import store
from ..errors import ApiError
from ..service import Service
from ..store import outbox, subscriptions
from . import links, mail, render, webhooks

log = logging.getLogger("comments.notify")

POLL_SECONDS = 1.0
BATCH = 10
LEASE_SECONDS = 120  # longer than a batch can take: each send has its own timeout
PRUNE_SECONDS = 3600


class Skip(Exception):
    """Nothing to send any more (the comment was moderated or deleted, the address unsubscribed)."""


def article_link(page: str, origins: tuple[str, ...], comment_id: int | None = None) -> str | None:
    """The article a page key names (a path on the first site origin, or a URL on a listed origin)."""
    link = None
    if page.startswith("/") and not page.startswith("//") and origins:
        link = origins[0] + page
    elif page.lower().startswith(("http://", "https://")):
        parts = urlsplit(page)
        if f"{parts.scheme.lower()}://{parts.netloc.lower()}" in origins:
            link = page.split("#")[0]
    if link and comment_id is not None:
        link += f"#comment-{comment_id}"
    return link


class Worker:
    """Delivers due outbox rows; any number of workers may run at once, on any machine."""

    def __init__(self, service: Service, name: str | None = None, batch: int = BATCH,
                 lease_seconds: int = LEASE_SECONDS) -> None:
        self.service = service
        self.db = service.db
        self.settings = service.settings
        self.templates = render.Templates(self.settings.mail_templates)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.halt = threading.Event()  # set when the process stops: finish the delivery under way, no more
        self._senders = {outbox.WEBHOOK: self._webhook, outbox.HELD: self._held, outbox.DIGEST: self._digest,
                         outbox.CONFIRM: self._confirm, outbox.REPLY: self._reply}

    # ---- the loop's one step ----------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Deliver what is due now (at most one batch); the number of deliveries tried."""
        now = now or store.utcnow()
        deliveries, digests = outbox.due(self.db, now)
        if digests:
            outbox.gather_digests(self.db, now)
            deliveries = True
        if not deliveries:
            return 0
        claim = f"{self.name}:{uuid.uuid4().hex[:12]}"[:100]
        items = outbox.claim(self.db, claim, now, self.batch, self.lease_seconds)
        started = time.monotonic()
        for index, item in enumerate(items):
            if self.halt.is_set() or time.monotonic() - started > self.lease_seconds / 2:
                for rest in items[index:]:  # give the rest back (stopping, or before our claim lapses)
                    outbox.release(self.db, rest)
                return index
            self.deliver(item, now)
        return len(items)

    def drain(self, now: datetime | None = None, rounds: int = 100) -> int:
        """run_once until nothing is due (for `comments worker --once` and tests)."""
        total = 0
        for _ in range(rounds):
            done = self.run_once(now)
            if not done:
                break
            total += done
        return total

    def deliver(self, item: outbox.Claimed, now: datetime) -> str:
        """Send one claimed delivery and record the outcome; the row's new status."""
        max_tries = self.settings.outbox_max_tries
        if item.attempts > max_tries:  # its worker stopped during delivery again and again
            return outbox.finish(self.db, item, now, "stopped during delivery too often", permanent=True)
        error: str | None = None
        permanent = False
        try:
            self._senders[item.kind](item, now)
        except Skip:
            pass
        except (mail.MailError, webhooks.WebhookError) as exc:
            error, permanent = exc.reason, exc.permanent
        except KeyError:
            error, permanent = f"malformed delivery ({item.kind})", True
        except Exception as exc:  # noqa: BLE001 - one bad delivery must not stop the others
            error = type(exc).__name__  # the type only: a message or traceback could quote an address
        status = outbox.finish(self.db, item, now, error, permanent=permanent, max_tries=max_tries,
                               jitter=random.random())
        if error:
            log.warning("delivery %d (%s), try %d: %s; now %s", item.id, item.kind, item.attempts, error, status)
        return status

    # ---- what each kind sends ---------------------------------------------------------------

    def _webhook(self, item: outbox.Claimed, now: datetime) -> None:
        target = outbox.webhook_target(self.db, int(item.target or 0))
        if target is None:
            raise Skip
        url, secret = target
        body = orjson.dumps(item.payload)
        webhooks.post(url, secret, body, str(item.payload.get("type", "")), item.event_id, int(time.time()),
                      self.settings.webhook_allowed_networks)

    def _base(self) -> str:
        return self.settings.public_url or ""

    def _common(self) -> dict[str, Any]:
        base = self._base()
        return {"site": urlsplit(base).hostname or "comments", "hours": self.settings.mail_link_hours,
                "queue_url": f"{base}/admin?status=pending"}

    def _moderator(self, item: outbox.Claimed) -> str:
        address = outbox.moderator_address(self.db, item.target or "")
        if address is None:
            raise Skip  # no longer a configured moderator
        return address

    def _held_view(self, comment_id: int, target: str, now: datetime) -> dict[str, Any] | None:
        try:
            c = store.get_full(self.db, comment_id)
        except ApiError:
            return None
        if c["status"] != "pending":
            return None
        keys, hours, base = self.service.keys, self.settings.mail_link_hours, self._base()
        actions = {a: links.url(base, "/mail/moderate", links.mod_action(keys, comment_id, a, target, now, hours))
                   for a in links.ACTIONS}
        return {
            "id": c["id"], "page": c["page"], "article": article_link(c["page"], self.settings.site_origins, c["id"]),
            "author": c["author"], "url": c["url"], "created": store.rfc3339(c["created_at"]),
            "score": f"{float(c['spam_score']):.2f}", "reasons": list(c["spam_reasons"] or []),
            "body": c.get("body") or "", "body_html": render.trusted_html(c["body_html"]), "links": actions,
        }

    def _held(self, item: outbox.Claimed, now: datetime) -> None:
        to = self._moderator(item)
        view = self._held_view(int(item.payload["comment_id"]), item.target or "", now)
        if view is None:
            raise Skip  # moderated (or deleted) before the mail went out
        subject, text, html = self.templates.mail("held", {**self._common(), "comment": view})
        mail.send(self.settings, [mail.Mail(to, subject, text, html)])

    def _digest(self, item: outbox.Claimed, now: datetime) -> None:
        to = self._moderator(item)
        views = [self._held_view(int(i), item.target or "", now) for i in item.payload.get("comment_ids", [])]
        shown = [v for v in views if v is not None]
        if not shown:
            raise Skip
        subject, text, html = self.templates.mail("digest", {**self._common(), "comments": shown})
        mail.send(self.settings, [mail.Mail(to, subject, text, html)])

    def _confirm(self, item: outbox.Claimed, now: datetime) -> None:
        who = subscriptions.confirmation(self.db, int(item.payload["subscription_id"]))
        if who is None:
            raise Skip
        token = links.confirm_token(self.service.keys, who.subscription_id, who.stamp, now,
                                    self.settings.mail_link_hours)
        context = {**self._common(), "confirm_url": links.url(self._base(), "/mail/confirm", token)}
        subject, text, html = self.templates.mail("confirm", context)
        mail.send(self.settings, [mail.Mail(who.email, subject, text, html)])

    def _reply(self, item: outbox.Claimed, now: datetime) -> None:
        notice = subscriptions.reply_notice(self.db, int(item.payload["comment_id"]))
        if notice is None:
            raise Skip
        token = links.unsubscribe_token(self.service.keys, notice.to.subscription_id, notice.to.stamp)
        leave = links.url(self._base(), "/mail/unsubscribe", token)
        reply = {**notice.reply, "body_html": render.trusted_html(notice.reply["body_html"]),
                 "link": article_link(notice.reply["page"], self.settings.site_origins, notice.reply["id"])}
        context = {**self._common(), "reply": reply, "parent": notice.parent, "unsubscribe_url": leave}
        subject, text, html = self.templates.mail("reply", context)
        headers = {"List-Unsubscribe": f"<{leave}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        mail.send(self.settings, [mail.Mail(notice.to.email, subject, text, html, headers)])


async def _in_thread(worker: Worker, func: Callable[..., Any], *args: Any) -> Any:
    """func in the threadpool; if the loop is cancelled meanwhile, the worker stops after the
    delivery under way and this waits for it, so no connection is left checked out."""
    step = asyncio.ensure_future(run_in_threadpool(func, *args))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        worker.halt.set()
        await asyncio.wait([step])
        raise


async def worker_loop(service: Service, stop: asyncio.Event | None = None, poll: float = POLL_SECONDS) -> None:
    """Deliver until stopped (or cancelled): at once while work is due, else every `poll` seconds;
    survives outages."""
    worker = Worker(service)
    stop = stop or asyncio.Event()
    pruned = 0.0
    while not stop.is_set():
        done = 0
        try:
            done = await _in_thread(worker, worker.run_once)
            if time.monotonic() - pruned > PRUNE_SECONDS:
                await _in_thread(worker, outbox.prune, service.db, store.utcnow())
                await _in_thread(worker, subscriptions.prune_links, service.db, store.utcnow())
                pruned = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the loop must survive a database outage
            log.warning("outbox worker: %s; will try again", type(exc).__name__)
        if not done:
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except TimeoutError:
                pass
