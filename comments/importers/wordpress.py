"""WordPress exports (WXR 1.0 to 1.2) read as a stream of ImportedComment records."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from .checks import Checker
from .records import FIELD_CAP, ImportFormatError, Item, Options, Problem, Status
from .values import canonical_id, link_page, parse_date
from .xmlstream import XmlHandler, read_xml

WHAT = "a WordPress export (WXR)"
_WP_NAMESPACE = re.compile(r"http://wordpress\.org/export/\d+\.\d+/")

STATUSES: dict[str, Status] = {
    "1": "approved", "approve": "approved", "approved": "approved",
    "0": "pending", "hold": "pending", "pending": "pending", "unapproved": "pending",
    "spam": "spam",
    "trash": "trash", "post-trashed": "trash",  # post-trashed: its post went to the trash
}
#: The comment types that are readers' comments; pings are another kind, and every other
#: type (WooCommerce order notes, editorial notes, ...) may be private: skipped, counted.
COMMENT_TYPES = frozenset({"", "comment"})
PING_TYPES = frozenset({"pingback", "trackback"})

_COMMENT_FIELDS = frozenset({
    "wp:comment_id", "wp:comment_author", "wp:comment_author_email", "wp:comment_author_url",
    "wp:comment_author_IP", "wp:comment_date", "wp:comment_date_gmt", "wp:comment_content",
    "wp:comment_approved", "wp:comment_type", "wp:comment_parent", "wp:comment_agent",
})
_ITEM_FIELDS = frozenset({"link", "guid"})
_CHANNEL_FIELDS = frozenset({"wp:wxr_version", "wp:base_site_url", "wp:base_blog_url"})
_MAX_OFFSET = timedelta(hours=14)
#: Comments kept while their post's link has not come yet (WordPress writes it first).
_MAX_WAITING = 100


def parse(path: str | os.PathLike[str], options: Options | None = None) -> Iterator[Item]:
    """Every comment of a WXR file, in file order, checked; problems as they are found.

    Raises ImportFormatError for a file that cannot be read as a whole (perhaps after some
    items: a truncated file is only known at its end).
    """
    options = options or Options()
    if options.page_from not in ("link", "guid"):
        raise ValueError("page_from must be 'link' or 'guid' for WordPress")
    handler = _Handler(Checker("wordpress", options))
    yield from read_xml(os.fspath(path), handler)
    if handler.root is not None and handler.version is None:
        raise ImportFormatError(None, f"this is not {WHAT}: it has no wp:wxr_version")


class _Handler(XmlHandler):
    def __init__(self, checker: Checker) -> None:
        super().__init__(WHAT)
        self.checker = checker
        self.options = checker.options
        self.version: str | None = None
        self.item_depth = 0
        self.item: dict[str, str] = {}
        self.waiting: list[tuple[dict[str, str], int, bool]] = []  # comments before their link
        self.comment_depth = 0
        self.fields: dict[str, str] = {}
        self.comment_line = 0
        self.body_truncated = False
        # The site's offset from UTC (local minus GMT) as last seen on a comment with both dates.
        self.offset: timedelta | None = None

    def shorten(self, uri: str, local: str) -> str:
        if not uri:
            return local
        return "wp:" + local if _WP_NAMESPACE.fullmatch(uri) else f"{{{uri}}}{local}"

    def start(self, tag: str, attrs: list[str]) -> None:
        depth = self.depth = self.depth + 1
        name = self._names.get(tag) or self.name(tag)
        if self.comment_depth:
            if depth == self.comment_depth + 1 and name in _COMMENT_FIELDS:
                cap = self.options.body_cap() + 1 if name == "wp:comment_content" else FIELD_CAP
                self.capture(name, cap)
        elif self.item_depth:
            if depth == self.item_depth + 1:
                if name == "wp:comment":
                    self.comment_depth, self.fields, self.comment_line = depth, {}, self.line()
                    self.body_truncated = False
                elif name in _ITEM_FIELDS:
                    self.capture(name)
        elif depth == 3 and name == "item":
            if self.version is None:
                raise self.not_this_format("no wp:wxr_version before the first item")
            self.item_depth, self.item, self.waiting = depth, {}, []
        elif depth == 3 and name in _CHANNEL_FIELDS:
            self.capture(name)
        elif depth == 1:
            self.root = name
            if name != "rss":
                raise self.not_this_format(f"the root element is <{_local(name)}>, not <rss>")

    def end(self, tag: str) -> None:
        got = self.captured()
        depth = self.depth
        self.depth = depth - 1
        if got is not None:
            key, text = got
            if self.comment_depth:
                self.fields[key] = text
                if key == "wp:comment_content":
                    self.body_truncated = self.truncated
            elif self.item_depth:
                self.item.setdefault(key, text)
            else:
                self._channel_field(key, text)
        elif depth == self.comment_depth:
            self.comment_depth = 0
            self._comment(self.fields, self.comment_line, self.body_truncated)
        elif depth == self.item_depth:
            self.item_depth = 0
            for fields, line, truncated in self.waiting:
                self._comment(fields, line, truncated, item_done=True)
            self.waiting = []

    def _channel_field(self, key: str, text: str) -> None:
        text = text.strip()
        if key == "wp:wxr_version":
            if re.fullmatch(r"1\.\d{1,3}", text) is None:
                raise self.not_this_format(f"unsupported WXR version {text[:20]!r} (versions 1.x are read)")
            self.version = text
        elif key == "wp:base_site_url" or (key == "wp:base_blog_url" and not self.checker.source):
            self.checker.source = text

    def _page(self, item_done: bool) -> tuple[str | None, str | None]:
        """(page key, warning) for the current item; (None, None) while it may still come."""
        wanted = self._page_key(self.options.page_from)
        if wanted is not None:
            return wanted, None
        if not item_done:
            return None, None
        other = "guid" if self.options.page_from == "link" else "link"
        fallback = self._page_key(other)
        if fallback is None:
            return None, None
        return fallback, f"post has no usable {self.options.page_from}: page key taken from its {other}"

    def _page_key(self, source: str) -> str | None:
        text = self.item.get(source, "").strip()
        if not text:
            return None
        return link_page(text) if source == "link" else text

    def _comment(self, fields: dict[str, str], line: int, truncated: bool, item_done: bool = False) -> None:
        page, note = self._page(item_done)
        if page is None and not item_done:
            if len(self.waiting) < _MAX_WAITING:
                self.waiting.append((fields, line, truncated))
                return
            page, note = self._page(item_done=True)  # no more waiting: what the item has now
        out = self.out
        origin_id = canonical_id(fields.get("wp:comment_id"))
        problem = self.checker.admit(origin_id, line)
        if problem is not None:
            out.append(problem)
            return
        assert origin_id is not None
        kind = fields.get("wp:comment_type", "").strip()
        if kind in PING_TYPES:
            if not self.options.include_pings:
                out.append(Problem(line, kind, origin_id=origin_id, kind="skipped"))
                return
        elif kind not in COMMENT_TYPES:
            out.append(Problem(line, f"comment type {kind[:40]}", origin_id=origin_id, kind="skipped"))
            return
        notes = [] if note is None else [Problem(line, note, origin_id=origin_id, kind="warning")]
        status_text = fields.get("wp:comment_approved", "").strip()
        status = STATUSES.get(status_text.lower())
        if status is None:
            status = "pending"
            notes.append(Problem(line, f"unknown status {status_text[:20]!r}: imported as pending",
                                 origin_id=origin_id, kind="warning"))
        created_at = self._date(fields, line, origin_id, notes)
        if isinstance(created_at, Problem):
            out.append(created_at)
            return
        parent = canonical_id(fields.get("wp:comment_parent"))
        if parent == "0":
            parent = None
        out.extend(self.checker.finish(
            origin_id=origin_id, position=line, page=page, parent=parent, status=status,
            created_at=created_at, author=html.unescape(fields.get("wp:comment_author", "")),
            email=fields.get("wp:comment_author_email", ""),
            url=fields.get("wp:comment_author_url", ""), ip=fields.get("wp:comment_author_IP", ""),
            user_agent=fields.get("wp:comment_agent", ""), body=fields.get("wp:comment_content", ""),
            body_format="text", truncated_body=truncated, notes=notes,
        ))

    def _date(self, fields: dict[str, str], line: int, origin_id: str, notes: list[Problem]) -> datetime | Problem:
        """The comment's UTC date: comment_date_gmt, else comment_date shifted by the site's
        offset last seen (or taken as UTC), with a warning; a Problem when neither is usable."""
        try:
            gmt = parse_date(fields.get("wp:comment_date_gmt"))
            local = parse_date(fields.get("wp:comment_date"))
        except ValueError as exc:
            return Problem(line, str(exc), origin_id=origin_id)
        if gmt is not None:
            if local is not None:
                offset = timedelta(minutes=round((local - gmt).total_seconds() / 900) * 15)
                if abs(offset) <= _MAX_OFFSET:
                    self.offset = offset
            return gmt
        if local is None:
            return Problem(line, "missing date", origin_id=origin_id)
        if self.offset is None:
            reason = "no comment_date_gmt: comment_date taken as UTC"
        else:
            reason = f"no comment_date_gmt: comment_date shifted by the site's offset {_hours(self.offset)}"
        notes.append(Problem(line, reason, origin_id=origin_id, kind="warning"))
        # Local time minus the site's offset (local minus UTC) is UTC.
        return local - self.offset if self.offset is not None else local


def _hours(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _local(name: str) -> str:
    return name.rpartition("}")[2] if name.startswith("{") else name
