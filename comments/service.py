"""The service's units of work: sanitise off the event loop, then one store call each."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

from . import forms, sanitize, spam, store
from .db import Database
from .models import CommentIn
from .moderation import SpamVerdict, count_links
from .security import Keys
from .settings import Settings


FORM_TOKEN_SECONDS = 24 * 3600  # a reader may take a long time to write


def _page_digest(page: str) -> str:
    return hashlib.sha256(page.encode("utf-8")).hexdigest()[:16]


class ThreadCache:
    """Serialised thread pages keyed by the page's public version: correct across workers,
    because every change that alters the public view bumps that version in the database."""

    def __init__(self, size: int = 2048) -> None:
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        with self._lock:
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Service:
    """Everything a handler needs: settings, database, keys (loaded on first use) and caches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.cache = ThreadCache()
        self._keys: Keys | None = None
        self._keys_lock = threading.Lock()

    @property
    def keys(self) -> Keys:
        if self._keys is None:
            with self._keys_lock:
                if self._keys is None:
                    self._keys = store.load_keys(self.db)
        return self._keys

    def create_comment(
        self, data: CommentIn, ip: str | None, user_agent: str | None,
        defence: forms.SpamFields | None = None, now: datetime | None = None, notify: bool = False,
    ) -> dict[str, Any]:
        """Render, judge and store a new comment; returns it with its status and edit token.
        (`now` is for replays of dated corpora; the service itself always uses the clock.)"""
        now = now or store.utcnow()
        body_html = sanitize.render(data.body)
        extra = self._form_signals(defence or forms.SpamFields(False, None), data.page, now)
        verdict = self.judge(data.email, data.author, data.url, ip, data.body, data.page, now, extra)
        new = store.NewComment(
            data=data, body_html=body_html, policy_version=sanitize.POLICY_VERSION,
            links=count_links(data.body, body_html), ip=ip, user_agent=user_agent, now=now, notify=notify,
        )
        comment = store.create_comment(self.db, self.keys, new, verdict)
        comment["edit_token"] = self.keys.edit_token(comment["id"])
        return comment

    def judge(
        self, email: str, author: str, url: str | None, ip: str | None, body: str, page: str,
        now: datetime, extra: list[spam.Signal] | None = None,
    ) -> SpamVerdict:
        """The spam filter's score and reasons for a comment (the thresholds come from the rules).
        `ip` is the full client address when known: its keyed hash finds history only while full
        addresses are kept (COMMENTS_IP_RETENTION_DAYS)."""
        feats = spam.features(body, author, url)
        ip_key = store.ip_lookup(self.db, ip) if ip and self.settings.ip_retention_days else None
        evidence = store.spam_evidence(
            self.db, feats, store.email_lookups(self.db, email), store.url_host(url), ip_key,
            store.body_hash(body), page, now,
        )
        signals = [
            *(extra or []),
            spam.text_signal(spam.text_probability(evidence.model, feats)),
            spam.repeat_signal(evidence.model, feats),
            spam.link_signal(spam.count_links(body), len(body)),
            spam.history_signal(evidence.spam_history, evidence.approved_history),
            spam.duplicate_signal(evidence.duplicate_pages, store.DUPLICATE_MINUTES),
        ]
        score, reasons = spam.combine(signals)
        return SpamVerdict(score, reasons)

    def form_token(self, page: str) -> str:
        """A signed token for the comment form of this page, stamped with the time it was shown."""
        return self.keys.sign("form", [_page_digest(page), int(time.time() * 1000)])

    def _form_signals(self, defence: forms.SpamFields, page: str, now: datetime) -> list[spam.Signal]:
        signals = [spam.honeypot_signal(defence.honeypot_filled)]
        token = defence.form_token
        if token is None:
            if self.settings.form_token_required:
                signals.append(spam.form_token_signal("missing", None))
            return signals
        try:
            if not token:
                raise ValueError("not a token")
            digest, shown = self.keys.unsign_fields("form", token, 2)
            if not isinstance(shown, int) or not isinstance(digest, str):
                raise ValueError
        except (ValueError, TypeError):
            signals.append(spam.form_token_signal("bad_signature", None))
            return signals
        age = time.time() - shown / 1000
        if digest != _page_digest(page):
            signals.append(spam.form_token_signal("other_page", None))
        elif age > FORM_TOKEN_SECONDS or age < -60:
            signals.append(spam.form_token_signal("expired", None))
        else:
            signals.append(spam.form_token_signal("ok", max(age, 0.0)))
        return signals

    def edit_by_author(self, comment_id: int, token: str | None, body: str) -> dict[str, Any]:
        body_html = sanitize.render(body)
        now = store.utcnow()

        def judge(email: str, author: str, url: str | None, page: str, text: str) -> SpamVerdict:
            return self.judge(email, author, url, None, text, page, now)

        return store.author_edit(
            self.db, self.keys, comment_id, token, body, body_html, sanitize.POLICY_VERSION,
            count_links(body, body_html), now, judge,
        )

    def thread_etag(self, page: str, version: int, limit: int, cursor: str | None) -> str:
        digest = hashlib.sha256(f"{page}\0{version}\0{limit}\0{cursor or ''}".encode()).hexdigest()
        return f'"{digest[:32]}"'

    def thread(self, page: str, limit: int, after: tuple[datetime, int] | None, cursor: str | None,
               encode: Any) -> tuple[str, bytes]:
        """(ETag, JSON body) of one page of a thread, from the cache when the version still holds."""
        version = store.thread_version(self.db, page)
        key = (page, version, limit, cursor)
        etag = self.thread_etag(page, version, limit, cursor)
        cached = self.cache.get(key)
        if cached is not None:
            return etag, cached
        thread = store.read_thread(self.db, page, limit, after)
        last = thread.last
        next_cursor = None if last is None else self.encode_cursor([last[0].isoformat(), last[1]])
        body = encode({"page": page, "total": thread.total, "comments": thread.comments, "next": next_cursor,
                       "closed": thread.closed})
        if thread.version == version:
            self.cache.put(key, body)
            return etag, body
        return self.thread_etag(page, thread.version, limit, cursor), body

    def encode_cursor(self, values: list[Any]) -> str:
        from .security import encode_cursor

        return encode_cursor(self.keys, values)

    def erase_person(self, email: str, keep_body: bool, actor: str) -> int:
        note = sanitize.render(store.people.ERASED_NOTE)
        return store.erase_person(self.db, email, keep_body, note, actor, store.utcnow())

    def edit_by_moderator(self, comment_id: int, change: store.Change, actor: str) -> dict[str, Any]:
        if change.body is not None:
            html = sanitize.render(change.body)
            change = store.Change(**{**change.__dict__, "body_html": html,
                                     "policy_version": sanitize.POLICY_VERSION})
        return store.change_comment(self.db, comment_id, change, actor, store.utcnow())
