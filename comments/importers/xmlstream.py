"""Hardened streaming XML: the base of the format handlers and the loop that feeds them a file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .records import FIELD_CAP, ImportFormatError, Item

if TYPE_CHECKING:
    from xml.parsers.expat import XMLParserType

# defusedxml's parser refuses a DOCTYPE (hence any entity declaration: no "billion laughs")
# and never resolves external references. The handler sees start/end/data events as expat
# produces them, keeps only the fields it needs, and hands over finished items after each
# chunk: no tree is built, so memory does not grow with the file.

CHUNK_BYTES = 1 << 16


class XmlHandler(ABC):
    """Base of the format handlers: tracks depth and captures the text of chosen elements."""

    def __init__(self, what: str) -> None:
        self.what = what  # "a WordPress export (WXR)", for messages
        self.expat: XMLParserType | None = None  # set by read_xml, which feeds it
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
        expat = self.expat
        assert expat is not None, "line() is only asked while read_xml parses"
        return expat.CurrentLineNumber

    def capture(self, key: str, cap: int = FIELD_CAP) -> None:
        """Collect the text of the element just started (at most cap + 1 characters)."""
        self._key, self._key_depth = key, self.depth
        self._buf, self._size, self._cap = [], 0, cap

    def data(self, text: str) -> None:
        """Character data: kept while an element is being captured, never more than its cap + 1."""
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
        """The error that stops an import of a file of another format, at the parser's line."""
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
