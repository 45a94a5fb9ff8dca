"""Pure moderation decision: reject outright as spam? hold for review? or publish."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .models import Rules, Status


@dataclass(frozen=True)
class Draft:
    """What the rules look at in a comment (the address as it will be stored)."""

    body: str
    author: str
    email: str
    url: str | None
    ip: str | None
    links: int


@dataclass(frozen=True)
class SpamVerdict:
    """What the spam filter said: a score in 0–1, its reasons, and its thresholds."""

    score: float = 0.0
    reasons: Sequence[str] = ()
    spam_threshold: float = 1.01
    hold_threshold: float = 1.01


@dataclass(frozen=True)
class Decision:
    status: Status
    score: float
    reasons: list[str] = field(default_factory=list)


def matching_words(words: Sequence[str], draft: Draft) -> list[str]:
    """The rule words found (case-insensitively) in body, author, email, url or address."""
    haystack = "\n".join(
        part for part in (draft.body, draft.author, draft.email, draft.url, draft.ip) if part
    ).casefold()
    return [w for w in words if w.strip() and w.strip().casefold() in haystack]


def decide(
    draft: Draft, rules: Rules, *, known_author: bool = False, spam: SpamVerdict | None = None
) -> Decision:
    """The status a new (or re-edited) comment gets, with the reasons that led there."""
    spam = spam or SpamVerdict()
    reasons = list(spam.reasons)
    score = spam.score

    blocked = matching_words(rules.blocked_words, draft)
    if blocked:
        reasons.append("blocked words: " + ", ".join(blocked))
        return Decision(Status.spam, 1.0, list(dict.fromkeys(reasons)))
    if score >= spam.spam_threshold:
        return Decision(Status.spam, score, list(dict.fromkeys(reasons)))

    held = False
    words = matching_words(rules.moderation_words, draft)
    if words:
        reasons.append("moderation words: " + ", ".join(words))
        held = True
    if draft.links > rules.max_links:
        reasons.append(f"{draft.links} links")
        held = True
    if score >= spam.hold_threshold:
        held = True
    reasons = list(dict.fromkeys(reasons))  # the link signal and the max_links rule may say the same
    if held:
        return Decision(Status.pending, score, reasons)

    if rules.moderation == "rules" or (rules.auto_approve_known_authors and known_author):
        return Decision(Status.approved, score, reasons)
    return Decision(Status.pending, score, reasons)


_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")


def count_links(body: str, body_html: str) -> int:
    """Links for the max_links rule: the rendered links, or the URLs written in the body if more
    (the linkifier only links hosts under top-level domains it knows)."""
    return max(body_html.count("<a "), len(_URL.findall(body)))
