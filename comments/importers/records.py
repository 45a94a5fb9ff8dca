"""The record every importer yields, the problems it reports, and the checks all formats share."""

from __future__ import annotations

from abc import ABC, abstractmethod
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

from ..forms import normalise_email, normalise_url
from ..security import normalise_ip

Status = Literal["approved", "pending", "spam", "trash"]
Kind = Literal["skipped", "failed", "warning"]

MAX_AUTHOR_CHARS = 245
MAX_PAGE_CHARS = 1024
MAX_USER_AGENT_CHARS = 512
#: The longest body read at all, even when long bodies are allowed: a bound on memory.
HARD_MAX_BODY_CHARS = 1_000_000
#: Every other field is read up to this many characters (enough to tell "too long").
FIELD_CAP = 4096

# Text controls other than tab, line feed and carriage return (the forms refuse them too).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_MEMO_SIZE = 10_000
_ZERO_DATE = re.compile(r"0{4}-0{2}-0{2}(?:[ T]0{2}:0{2}(?::0{2})?)?")


@dataclass(frozen=True, slots=True)
class ImportedComment:
    """One comment read from another system's export, checked and ready to be stored."""

    origin: str  # "wordpress", "disqus" or "isso"
    origin_id: str  # the comment's id in that system: unique within origin + source
    page: str  # the page key
    parent_origin_id: str | None  # the parent's origin id, as written (may be absent from the file)
    status: Status
    created_at: datetime  # naive UTC
    author: str  # may be empty: the other systems allow anonymous comments
    email: str  # normalised when valid; "" when the source had none; as given if allowed
    url: str | None
    ip: str | None
    user_agent: str | None
    body: str  # as written in the source, trimmed: the writer sanitises it like a new comment
    position: int  # line of the comment in an XML file, row number in an Isso database
    source: str = ""  # the exporting site: WXR base_site_url, Disqus forum, Isso session key
    body_format: Literal["text", "html", "markdown"] = "text"


@dataclass(slots=True)
class Problem:
    """Something the report must tell: a comment skipped or failed, or a note on one imported."""

    position: int | None
    reason: str
    fatal: bool = False  # parsers yield only non-fatal problems; see ImportFormatError.problem
    origin_id: str | None = None
    kind: Kind = "failed"


class ImportFormatError(Exception):
    """The file as a whole cannot be read: not this format, malformed, truncated or hostile."""

    def __init__(self, position: int | None, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.position = position
        self.column = column
        self.message = message

    @property
    def problem(self) -> Problem:
        """The error as a fatal Problem, for the report."""
        return Problem(self.position, self.message, fatal=True)


Item = ImportedComment | Problem


@dataclass(frozen=True, slots=True)
class Options:
    """How to read an export; the defaults are the safe choices."""

    page_from: str = "link"  # WordPress: "link" or "guid"; Disqus: "link" or "identifier"
    include_pings: bool = False  # WordPress pingbacks and trackbacks
    max_body_chars: int = 10_000  # longer bodies are failed with a reason ...
    allow_long_bodies: bool = False  # ... unless allowed (up to HARD_MAX_BODY_CHARS)
    allow_invalid_emails: bool = False  # keep an invalid address as given instead of failing

    def body_cap(self) -> int:
        """How many characters of a body to read before it is certainly too long."""
        return HARD_MAX_BODY_CHARS if self.allow_long_bodies else min(self.max_body_chars, HARD_MAX_BODY_CHARS)


# ---- values ---------------------------------------------------------------------------


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


def canonical_id(value: str | None) -> str | None:
    """An id as text without surrounding space (and without leading zeros when numeric)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        value = value.lstrip("0") or "0"
    return value or None


# ---- the shared checks -------------------------------------------------------------------


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


# ---- hardened streaming XML ------------------------------------------------------------
# defusedxml's parser refuses a DOCTYPE (hence any entity declaration: no "billion laughs")
# and never resolves external references. The handler sees start/end/data events as expat
# produces them, keeps only the fields it needs, and hands over finished items after each
# chunk: no tree is built, so memory does not grow with the file.

CHUNK_BYTES = 1 << 16


class XmlHandler(ABC):
    """Base of the format handlers: tracks depth and captures the text of chosen elements."""

    def __init__(self, what: str) -> None:
        self.what = what  # "a WordPress export (WXR)", for messages
        self.expat: object | None = None
        self.depth = 0
        self.out: list[Item] = []
        self._names: dict[str, str] = {}
        self._key: str | None = None
        self._key_depth = 0
        self._buf: list[str] = []
        self._size = 0
        self._cap = FIELD_CAP
        self.truncated = False
        self.root: str | None = None  # the root element's name, once seen

    def line(self) -> int:
        """The line the parser is at (during a start event: the element's own line)."""
        return self.expat.CurrentLineNumber  # type: ignore[attr-defined, no-any-return]

    def capture(self, key: str, cap: int = FIELD_CAP) -> None:
        """Collect the text of the element just started (at most cap + 1 characters)."""
        self._key, self._key_depth = key, self.depth
        self._buf, self._size, self._cap = [], 0, cap

    def data(self, text: str) -> None:
        if self._key is not None:
            self._buf.append(text)
            self._size += len(text)
            if self._size > self._cap:
                joined = "".join(self._buf)[: self._cap + 1]
                self._buf, self._size = [joined], len(joined)

    def captured(self) -> tuple[str, str] | None:
        """At an end event: (key, text) when the element ending is the one being captured."""
        if self._key is None or self.depth != self._key_depth:
            return None
        key, text = self._key, "".join(self._buf)
        self.truncated = self._size > self._cap
        self._key, self._buf = None, []
        return key, text

    def name(self, tag: str) -> str:
        """A short name for an expat name ("uri}local", or "local" without a namespace)."""
        short = self._names.get(tag)
        if short is None:
            uri, _, local = tag.rpartition("}")
            short = self._names[tag] = self.shorten(uri, local)
        return short

    def shorten(self, uri: str, local: str) -> str:
        """An element's name: "prefix:local" for the format's own namespaces (uri "" for none)."""
        return f"{{{uri}}}{local}" if uri else local

    @abstractmethod
    def start(self, tag: str, attrs: list[str]) -> None:
        """An element opens (each format's handler reads what it needs)."""

    @abstractmethod
    def end(self, tag: str) -> None:
        """An element closes."""

    def not_this_format(self, detail: str) -> ImportFormatError:
        return ImportFormatError(self.line() if self.expat else None, f"this is not {self.what}: {detail}")


def read_xml(path: str, handler: XmlHandler) -> Iterator[Item]:
    """Stream a file through the hardened parser, yielding the handler's items as they come."""
    from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
    from defusedxml.ElementTree import DefusedXMLParser, ParseError

    parser = DefusedXMLParser(target=handler, forbid_dtd=True)
    # Element events go straight from expat to the handler: ElementTree's per-event wrapper
    # (name fixing, attribute dict) cost a quarter of the parse. defusedxml's own handlers
    # (doctype, entity declarations, external references) stay installed.
    expat = handler.expat = parser.parser
    expat.StartElementHandler = handler.start
    expat.EndElementHandler = handler.end
    expat.CharacterDataHandler = handler.data
    # The marks around a CDATA section (WordPress writes eight per comment) would each go to
    # ElementTree's catch-all handler, which ignores them; the section's text still comes to data().
    expat.StartCdataSectionHandler = expat.EndCdataSectionHandler = _ignore
    try:
        stream = open(path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
    except OSError as exc:
        raise ImportFormatError(None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        while True:
            try:
                chunk = stream.read(CHUNK_BYTES)
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
            except OSError as exc:
                raise ImportFormatError(None, f"cannot read the file: {exc.strerror or exc}") from None
            except ParseError as exc:
                error = _malformed(handler, exc)
                items, handler.out = handler.out, []
                yield from items  # what the chunk held before the break still counts
                raise error from None
            except (DTDForbidden, EntitiesForbidden) as exc:
                raise ImportFormatError(
                    handler.line(), f"refused: the file declares a document type or entities "
                    f"(line {handler.line()}), which exports never do and which can hide an XML "
                    f"bomb or read other files ({type(exc).__name__})") from None
            except DefusedXmlException as exc:
                raise ImportFormatError(
                    handler.line(), f"refused: the file refers to an external resource "
                    f"(line {handler.line()}), which is never fetched ({type(exc).__name__})") from None
            if handler.out:
                items, handler.out = handler.out, []
                yield from items
            if not chunk:
                return
    finally:
        stream.close()


def _ignore() -> None:
    """An expat handler that does nothing."""


def attribute(attrs: list[str], name: str) -> str | None:
    """An attribute's value from expat's flat [name, value, ...] list (names as "uri}local")."""
    for index in range(0, len(attrs) - 1, 2):
        if attrs[index] == name:
            return attrs[index + 1]
    return None


def _malformed(handler: XmlHandler, exc: Exception) -> ImportFormatError:
    line, column = getattr(exc, "position", (None, None))
    detail = str(exc).split(": line ")[0]
    if handler.root is None:
        return ImportFormatError(line, f"this is not {handler.what}: not an XML file ({detail})", column)
    if detail in ("no element found", "unclosed token"):
        return ImportFormatError(
            line, f"the file ends too early (truncated?) at line {line}, column {column}: {detail}", column)
    return ImportFormatError(line, f"malformed XML at line {line}, column {column}: {detail}", column)
