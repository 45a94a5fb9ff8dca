"""The record every importer yields, the problems it reports, and the options that shape a read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Status = Literal["approved", "pending", "spam", "trash"]
Kind = Literal["skipped", "failed", "warning"]

#: The longest body read at all, even when long bodies are allowed: a bound on memory.
HARD_MAX_BODY_CHARS = 1_000_000
#: Every other field is read up to this many characters (enough to tell "too long").
FIELD_CAP = 4096


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
