"""The values every format holds in its own way: dates, page addresses and comment ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

_ZERO_DATE = re.compile(r"0{4}-0{2}-0{2}(?:[ T]0{2}:0{2}(?::0{2})?)?")


def parse_date(text: str | None) -> datetime | None:
    """A date as naive UTC; None when missing (empty or all zeros); ValueError when unreadable.

    Accepts ISO 8601 / RFC 3339 (with or without "T", offset, "Z" or fractions) and
    RFC 2822 (RSS's pubDate); a date without an offset is taken as UTC.
    """
    if text is None:
        return None
    text = text.strip()
    if not text or _ZERO_DATE.fullmatch(text):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            raise ValueError(f"unreadable date {text[:40]!r}") from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"unreadable date {text[:40]!r}") from None
    return value


def link_page(link: str) -> str | None:
    """The page key of an article's address: its path, with the query when there is one
    (plain permalinks are "/?p=123"); None for an address that cannot be split."""
    try:
        parts = urlsplit(link.strip())
    except ValueError:
        return None
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def canonical_id(value: str | None) -> str | None:
    """An id as text without surrounding space (and without leading zeros when numeric)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        value = value.lstrip("0") or "0"
    return value or None
