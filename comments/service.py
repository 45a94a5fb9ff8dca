"""The service's units of work: sanitise off the event loop, then one store call each."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from . import sanitize, store
from .db import Database
from .models import CommentIn
from .security import Keys
from .settings import Settings


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

    def create_comment(self, data: CommentIn, ip: str | None, user_agent: str | None) -> dict[str, Any]:
        """Render, judge and store a new comment; returns it with its status and edit token."""
        body_html = sanitize.render(data.body)
        new = store.NewComment(
            data=data, body_html=body_html, policy_version=sanitize.POLICY_VERSION,
            links=sanitize.count_links(body_html), ip=ip, user_agent=user_agent, now=store.utcnow(),
        )
        comment = store.create_comment(self.db, self.keys, new)
        comment["edit_token"] = self.keys.edit_token(comment["id"])
        return comment

    def edit_by_author(self, comment_id: int, token: str | None, body: str) -> dict[str, Any]:
        body_html = sanitize.render(body)
        return store.author_edit(
            self.db, self.keys, comment_id, token, body, body_html, sanitize.POLICY_VERSION,
            sanitize.count_links(body_html), store.utcnow(),
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
