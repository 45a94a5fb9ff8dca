"""Disqus exports (the XML of threads and posts) read as a stream of ImportedComment records."""

from __future__ import annotations

import os
from collections.abc import Iterator

from .checks import Checker
from .records import FIELD_CAP, Item, Options, Problem, Status
from .values import canonical_id, link_page, parse_date
from .xmlstream import XmlHandler, attribute, read_xml

WHAT = "a Disqus export"
NAMESPACE = "http://disqus.com"
INTERNALS = "http://disqus.com/disqus-internals"
_ID = INTERNALS + "}id"

_POST_FIELDS = frozenset({"message", "createdAt", "isDeleted", "isSpam", "ipAddress"})
_AUTHOR_FIELDS = frozenset({"name", "email", "username"})
_THREAD_FIELDS = frozenset({"link", "id", "forum"})


def parse(path: str | os.PathLike[str], options: Options | None = None) -> Iterator[Item]:
    """Every post of a Disqus export, checked; problems as they are found.

    Threads normally come before their posts. Only a map of thread id -> page key is kept;
    a post whose thread has not been seen yet is remembered by its ordinal alone, and such
    posts are read again in a second pass over the file once every thread is known (memory
    stays bounded by the number of threads and of such posts, never by their text).
    """
    options = options or Options()
    if options.page_from not in ("link", "identifier"):
        raise ValueError("page_from must be 'link' or 'identifier' for Disqus")
    checker = Checker("disqus", options)
    threads: dict[str, str | None] = {}
    first = _Handler(checker, threads, deferred=None)
    yield from read_xml(os.fspath(path), first)
    if first.later:
        second = _Handler(checker, threads, deferred=first.later)
        yield from read_xml(os.fspath(path), second)


class _Handler(XmlHandler):
    def __init__(self, checker: Checker, threads: dict[str, str | None], deferred: set[int] | None) -> None:
        super().__init__(WHAT)
        self.checker = checker
        self.options = checker.options
        self.threads = threads  # dsq:id -> page key (None: the thread has none)
        self.deferred = deferred  # second pass: only these post ordinals are read
        self.later: set[int] = set()  # first pass: posts whose thread was not known yet
        self.ordinal = 0
        self.kind = ""  # "thread" or "post" while inside one (depth 2)
        self.own_id: str | None = None
        self.fields: dict[str, str] = {}
        self.line_at = 0
        self.body_truncated = False
        self.in_author = False

    def shorten(self, uri: str, local: str) -> str:
        return local if uri == NAMESPACE else f"{{{uri}}}{local}"

    def start(self, tag: str, attrs: list[str]) -> None:
        depth = self.depth = self.depth + 1
        name = self._names.get(tag) or self.name(tag)
        kind = self.kind
        if kind == "post":
            if depth == 3:
                if name in _POST_FIELDS:
                    if self.deferred is None or self.ordinal in self.deferred:
                        cap = self.options.body_cap() + 1 if name == "message" else FIELD_CAP
                        self.capture(name, cap)
                elif name == "thread" or name == "parent":
                    self.fields[name] = attribute(attrs, _ID) or ""
                elif name == "author":
                    self.in_author = True
            elif depth == 4 and self.in_author and name in _AUTHOR_FIELDS:
                self.capture("author_" + name)
        elif kind == "thread":
            if depth == 3 and name in _THREAD_FIELDS and self.deferred is None:
                self.capture(name)
        elif depth == 2:
            if name == "post":
                self.ordinal += 1
                self.kind, self.fields, self.line_at = "post", {}, self.line()
                self.own_id = canonical_id(attribute(attrs, _ID))
                self.body_truncated = False
            elif name == "thread":
                self.kind, self.fields = "thread", {}
                self.own_id = canonical_id(attribute(attrs, _ID))
        elif depth == 1:
            self.root = name
            if name != "disqus":
                local = name.rpartition("}")[2]
                if local == "disqus":
                    raise self.not_this_format("the root element <disqus> is not in the Disqus namespace")
                raise self.not_this_format(f"the root element is <{local}>, not <disqus>")

    def end(self, tag: str) -> None:
        got = self.captured()
        depth = self.depth
        self.depth = depth - 1
        if got is not None:
            key, text = got
            self.fields[key] = text
            if key == "message":
                self.body_truncated = self.truncated
        elif depth == 3 and self.in_author:
            self.in_author = False
        elif depth == 2 and self.kind:
            if self.kind == "post":
                self._post()
            elif self.deferred is None:
                self._thread()
            self.kind = ""

    def _thread(self) -> None:
        fields = self.fields
        if not self.checker.source and fields.get("forum", "").strip():
            self.checker.source = fields["forum"].strip()
        if self.own_id is None:
            return
        link = fields.get("link", "").strip()
        identifier = fields.get("id", "").strip()
        page = identifier if self.options.page_from == "identifier" and identifier else None
        if page is None and link:
            page = link_page(link)
        # An empty duplicate <thread> (Disqus writes some) must not hide the real one.
        if page is not None or self.own_id not in self.threads:
            self.threads[self.own_id] = page

    def _post(self) -> None:
        fields, line, origin_id = self.fields, self.line_at, self.own_id
        if self.deferred is not None and self.ordinal not in self.deferred:
            return
        thread = canonical_id(fields.get("thread")) or ""
        if thread not in self.threads:
            if self.deferred is None:
                self.later.add(self.ordinal)
            else:
                self.out.append(Problem(line, f"unknown thread {thread[:40] or '(none)'}", origin_id=origin_id))
            return
        problem = self.checker.admit(origin_id, line)
        if problem is not None:
            self.out.append(problem)
            return
        assert origin_id is not None
        page = self.threads[thread]
        if page is None:
            self.out.append(Problem(line, f"thread {thread} has no link", origin_id=origin_id))
            return
        spam = fields.get("isSpam", "").strip().lower() == "true"
        deleted = fields.get("isDeleted", "").strip().lower() == "true"
        status: Status = "spam" if spam else "trash" if deleted else "approved"
        body = fields.get("message", "")
        if deleted and not body.strip():
            self.out.append(Problem(line, "deleted in Disqus, no text", origin_id=origin_id, kind="skipped"))
            return
        try:
            created_at = parse_date(fields.get("createdAt"))
        except ValueError as exc:
            self.out.append(Problem(line, str(exc), origin_id=origin_id))
            return
        author = fields.get("author_name", "").strip() or fields.get("author_username", "")
        self.out.extend(self.checker.finish(
            origin_id=origin_id, position=line, page=page, parent=canonical_id(fields.get("parent")),
            status=status, created_at=created_at, author=author, email=fields.get("author_email", ""),
            url="", ip=fields.get("ipAddress", ""), user_agent="", body=body, body_format="html",
            truncated_body=self.body_truncated,
        ))
