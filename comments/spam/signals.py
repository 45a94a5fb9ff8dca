"""Spam signals, each a score in [0, 1] with a short reason, and their combination by noisy-OR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .textfeatures import TEXT_DIGEST_PREFIX
from .model import TextModel

#: A comment whose combined score reaches this is filed as spam.
DEFAULT_SPAM_THRESHOLD = 0.5
#: A comment whose combined score reaches this (but not the spam threshold) is held.
DEFAULT_HOLD_THRESHOLD = 0.2


@dataclass(frozen=True)
class Signal:
    """One piece of spam evidence: ``score`` in [0, 1] (0 = none) and a short reason when it counts."""

    score: float
    reason: str | None = None


NO_SIGNAL = Signal(0.0, None)

#: A signal below this strength adds to the score but is not listed among the reasons.
REASON_MIN_SCORE = 0.1
#: Honeypots are filled by bots, hardly ever by people: near-certain, yet never exactly 1.
MAX_SIGNAL_SCORE = 0.999
#: Posting sooner than this after the form was shown is suspicious.
MIN_HUMAN_SECONDS = 3.0


def _strength(score: float) -> float:
    """``score`` clamped to [0, MAX_SIGNAL_SCORE]; NaN counts as no evidence."""
    return min(score, MAX_SIGNAL_SCORE) if score > 0.0 else 0.0


def _signal(score: float, reason: str) -> Signal:
    score = _strength(score)
    return Signal(score, reason if score >= REASON_MIN_SCORE else None)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def link_signal(n_links: int, text_chars: int) -> Signal:
    """Links: one is a faint hint, several add up, a body that is mostly links weighs more."""
    if n_links <= 0:
        return NO_SIGNAL
    score = 1.0 - 0.85**n_links  # 1: 0.15, 2: 0.28, 3: 0.39, 5: 0.56
    if text_chars < 40 * n_links:  # little text around the links
        score = 1.0 - (1.0 - score) * 0.8
    return _signal(score, _plural(n_links, "link"))


def honeypot_signal(filled: bool) -> Signal:
    """The hidden form field that only bots fill in."""
    return _signal(MAX_SIGNAL_SCORE, "honeypot filled") if filled else NO_SIGNAL


_TOKEN_SCORES = {
    "missing": (0.4, "no form token"),
    "expired": (0.25, "form token expired"),
    "bad_signature": (0.8, "forged form token"),
    "other_page": (0.35, "form token of another page"),
}


def form_token_signal(status: str, seconds_since_shown: float | None) -> Signal:
    """The signed token of the comment form: missing, expired, forged, for another page, or too fast.

    ``status`` is one of "ok", "missing", "expired", "bad_signature",
    "other_page"; ``seconds_since_shown`` is the time between showing the form
    and receiving the comment when the token tells it.
    """
    if status == "ok":
        if seconds_since_shown is not None and seconds_since_shown < MIN_HUMAN_SECONDS:
            seconds = max(seconds_since_shown, 0.0)
            score = 0.7 - 0.3 * seconds / MIN_HUMAN_SECONDS  # 0 s: 0.7, just under 3 s: 0.4
            return _signal(score, f"sent {seconds:.0f} s after the form was shown")
        return NO_SIGNAL
    if status not in _TOKEN_SCORES:
        raise ValueError(f"unknown form token status: {status!r}")
    score, reason = _TOKEN_SCORES[status]
    return _signal(score, reason)


def history_signal(spam_count: int, approved_count: int) -> Signal:
    """Earlier verdicts on the same email, website or address; approvals dilute spam verdicts."""
    if spam_count <= 0:
        return NO_SIGNAL
    share = spam_count / (spam_count + max(approved_count, 0))
    score = share * (1.0 - 0.6**spam_count)  # 1: 0.4, 2: 0.64, 4: 0.87 when never approved
    times = "once" if spam_count == 1 else f"{spam_count} times"
    return _signal(score, f"author marked spam {times}")


def duplicate_signal(pages: int, minutes: int) -> Signal:
    """The same text posted on several pages within the last ``minutes``."""
    if pages <= 1:
        return NO_SIGNAL
    score = 1.0 - 0.6 ** (pages - 1)  # 2 pages: 0.4, 3: 0.64, 4: 0.78
    return _signal(score, f"same text on {pages} pages in {minutes} min")


def text_signal(p: float) -> Signal:
    """The text model's probability: only the part above one half is evidence."""
    if not p > 0.5:  # also NaN
        return NO_SIGNAL
    p = min(p, 1.0)
    return _signal(2.0 * p - 1.0, f"text model {p:.2f}")


def repeat_signal(model: TextModel, feats: Sequence[str]) -> Signal:
    """The same text (as the text model normalises it) judged spam by moderators more often than not.

    Spam campaigns post one text under many names; the text model's digest
    feature already counts the verdicts on each text, so an exact repeat of a
    text marked spam weighs as much as the moderators' verdicts on it.
    """
    digest = next((f for f in feats if f.startswith(TEXT_DIGEST_PREFIX)), None)
    if digest is None:
        return NO_SIGNAL
    s, h = model.counts.get(digest, (0, 0))
    if s <= h:
        return NO_SIGNAL
    score = 1.0 - 0.5 ** (s - h)  # 1 more spam than approved verdict: 0.5, 2: 0.75, 3: 0.88
    times = "once" if s == 1 else f"{s} times"
    return _signal(score, f"same text marked spam {times}")


def words_signal(blocked: list[str]) -> Signal:
    """Words from the site's block list found in the comment."""
    if not blocked:
        return NO_SIGNAL
    names = list(dict.fromkeys(blocked))
    score = 1.0 - 0.3 * 0.5 ** (len(names) - 1)  # 1 word: 0.7, 2: 0.85, 3: 0.93
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return _signal(score, f"words: {shown}")


def combine(signals: Sequence[Signal]) -> tuple[float, list[str]]:
    """The spam score in [0, 1] and the reasons of the signals that counted.

    Noisy-OR: each signal is an independent chance that the comment is spam,
    so ``score = 1 - prod(1 - s_i)``.  Evidence only accumulates, one strong
    signal suffices, weak ones add up without ever reaching 1, and the order
    of the signals does not matter.  Reasons are listed strongest first.
    """
    keep = 1.0
    reasons = []
    for sig in signals:
        s = _strength(sig.score)
        keep *= 1.0 - s
        if sig.reason is not None and s >= REASON_MIN_SCORE:
            reasons.append((s, sig.reason))
    reasons.sort(key=lambda item: -item[0])
    return min(max(1.0 - keep, 0.0), 1.0), [r for _, r in reasons]
