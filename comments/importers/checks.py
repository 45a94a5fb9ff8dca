"""The checks every imported record passes, applied by one Checker per import."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal

from ..forms import normalise_email, normalise_url
from ..security import normalise_ip
from .records import HARD_MAX_BODY_CHARS, ImportedComment, Item, Options, Problem, Status

MAX_AUTHOR_CHARS = 245
MAX_PAGE_CHARS = 1024
MAX_USER_AGENT_CHARS = 512

# Text controls other than tab, line feed and carriage return (the forms refuse them too).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_MEMO_SIZE = 10_000


class IdSet:
    """The origin ids seen so far, compactly: small numbers as bits, anything else in a set."""

    _BITMAP_LIMIT = 1 << 27  # at most 16 MiB of bits

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[str] = set()

    def add(self, value: str) -> bool:
        """Record an id; False when it was already there."""
        if value.isdigit() and value.isascii() and len(value) <= 9 and int(value) < self._BITMAP_LIMIT:
            number = int(value)
            index, bit = number >> 3, 1 << (number & 7)
            if index >= len(self._bits):
                self._bits.extend(bytes(max(index + 1 - len(self._bits), len(self._bits))))
            if self._bits[index] & bit:
                return False
            self._bits[index] |= bit
            return True
        if value in self._other:
            return False
        self._other.add(value)
        return True


class Checker:
    """Applies the same rules to every record of one import, and remembers ids seen."""

    def __init__(self, origin: str, options: Options) -> None:
        self.origin = origin
        self.options = options
        self.source = ""
        self.seen = IdSet()
        self._emails: dict[str, str | None] = {}
        self._urls: dict[str, tuple[str | None, str | None]] = {}

    def admit(self, origin_id: str | None, position: int) -> Problem | None:
        """None when the id is new; otherwise why the comment is not read further."""
        if origin_id is None:
            return Problem(position, "missing comment id")
        if len(origin_id) > 100:
            return Problem(position, "comment id longer than 100 characters")
        if not self.seen.add(origin_id):
            return Problem(position, f"duplicate id {origin_id} (an earlier comment has it)",
                           origin_id=origin_id, kind="skipped")
        return None

    def finish(
        self, *, origin_id: str, position: int, page: str | None, parent: str | None,
        status: Status, created_at: datetime | None, author: str, email: str, url: str,
        ip: str, user_agent: str, body: str, body_format: Literal["text", "html", "markdown"],
        truncated_body: bool = False, notes: Iterable[Problem] = (),
    ) -> Iterator[Item]:
        """The checked record after any warnings about it (the parser's notes first), or the
        one reason it fails (and then no warnings)."""
        fail = self._fail_reason(page, created_at, author, body, truncated_body)
        if fail is not None:
            yield Problem(position, fail, origin_id=origin_id)
            return
        assert page is not None and created_at is not None
        email = email.strip()
        normalised = self._email(email) if email else email
        if normalised is None and not self.options.allow_invalid_emails:
            yield Problem(position, "invalid email", origin_id=origin_id)
            return
        yield from notes
        if email:
            if normalised is None:
                yield Problem(position, "invalid email kept as given", origin_id=origin_id, kind="warning")
            else:
                email = normalised
        clean_url: str | None = None
        url = url.strip()
        if url:
            clean_url, url_error = self._url(url)
            if url_error is not None:
                yield Problem(position, f"website dropped: {url_error}", origin_id=origin_id, kind="warning")
        clean_ip: str | None = None
        ip = ip.strip()
        if ip:
            try:
                clean_ip = normalise_ip(ip)
            except ValueError:
                yield Problem(position, "address dropped: not an IP address", origin_id=origin_id,
                              kind="warning")
        if parent == origin_id:
            yield Problem(position, "comment is its own parent: made top level", origin_id=origin_id,
                          kind="warning")
            parent = None
        agent = _LINE_CONTROL.sub(" ", user_agent.strip())[:MAX_USER_AGENT_CHARS] or None
        yield ImportedComment(
            origin=self.origin, origin_id=origin_id, page=page, parent_origin_id=parent,
            status=status, created_at=created_at, author=author.strip(), email=email,
            url=clean_url, ip=clean_ip, user_agent=agent, body=body.strip(), position=position,
            source=self.source, body_format=body_format,
        )

    def _fail_reason(self, page: str | None, created_at: datetime | None, author: str, body: str,
                     truncated_body: bool) -> str | None:
        if not page:
            return "no page key"
        if len(page) > MAX_PAGE_CHARS:
            return f"page key longer than {MAX_PAGE_CHARS} characters"
        if _LINE_CONTROL.search(page):
            return "page key contains control characters"
        if created_at is None:
            return "missing date"
        author = author.strip()
        if len(author) > MAX_AUTHOR_CHARS:
            return f"author longer than {MAX_AUTHOR_CHARS} characters"
        if _LINE_CONTROL.search(author):
            return "author contains control characters"
        body = body.strip()
        if not body:
            return "empty body"
        limit = HARD_MAX_BODY_CHARS if self.options.allow_long_bodies else self.options.max_body_chars
        if truncated_body or len(body) > limit:
            return f"body longer than {limit} characters"
        if _CONTROL.search(body):
            return "body contains control characters"
        return None

    # Each check costs about 16 us and the same authors' addresses recur: remember answers.

    def _email(self, value: str) -> str | None:
        if value in self._emails:
            return self._emails[value]
        try:
            result: str | None = normalise_email(value)
        except ValueError:
            result = None
        if len(self._emails) >= _MEMO_SIZE:
            self._emails.clear()
        self._emails[value] = result
        return result

    def _url(self, value: str) -> tuple[str | None, str | None]:
        """(normalised url, None) or (None, why it is dropped)."""
        if value in self._urls:
            return self._urls[value]
        try:
            result: tuple[str | None, str | None] = (normalise_url(value), None)
        except ValueError as exc:
            result = (None, str(exc))
        if len(self._urls) >= _MEMO_SIZE:
            self._urls.clear()
        self._urls[value] = result
        return result
