"""Spam scoring: text features, an online naive Bayes text model, signals and their combination.

Everything here is pure: plain values in, plain values out, no clock reads,
no database (``read_labelled_csv`` only reads the file it is given).  The
text model is nothing but counts, so the store can keep it in two tables
shared by every worker:

* ``spam_features(feature TEXT PRIMARY KEY, spam INTEGER, ham INTEGER)``
* ``spam_totals(spam_docs INTEGER, ham_docs INTEGER)``

Learning a verdict adds ``learn_delta(...)`` to those tables; unlearning a
reversed verdict adds the same delta with ``sign=-1``.  Scoring a comment
fetches the rows of its ``features(...)`` (one ``IN (...)`` query), builds a
``TextModel`` and calls ``text_probability``; ``text_signal`` of that and the
other ``*_signal`` functions go to ``combine``.

The design (chosen by leave-one-file-out replays in ``bench/spam_tune.py``):
naive Bayes over the features present in a comment, Lidstone-smoothed; the
log-likelihood ratios are summed per feature family (words, word pairs,
character n-grams, author words, hosts...) and each family's sum is divided
by the square root of its size, because overlapping n-grams repeat the same
evidence; the ``meta:`` facts are independent and count in full.  The result
is Platt-scaled (temperature and bias fitted on the replays) and the class
prior added.  Signals combine by noisy-OR.
"""

from __future__ import annotations

import csv
import hashlib
import html
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# ---------------------------------------------------------------------------
# Thresholds

#: A comment whose combined score reaches this is filed as spam.
DEFAULT_SPAM_THRESHOLD = 0.5
#: A comment whose combined score reaches this (but not the spam threshold) is held.
DEFAULT_HOLD_THRESHOLD = 0.2

#: Vocabulary cap of the feature table; see ``prune_level``.
DEFAULT_VOCABULARY_CAP = 200_000

# ---------------------------------------------------------------------------
# Features


@dataclass(frozen=True)
class FeatureOptions:
    """Which feature families ``features`` emits (the bench compares variants)."""

    unigrams: bool = True
    bigrams: bool = True
    trigrams: bool = False
    char_ngrams: tuple[int, int] | None = (3, 4)
    char_scope: str = "words"  # "words": n-grams inside each word; "text": across the normalised text
    author: bool = True
    hosts: bool = True
    meta: bool = True
    text_hash: bool = True
    opening: int = 3  # the first N words as one feature (spam templates share their opening); 0: none
    max_features: int = 400


FEATURE_OPTIONS = FeatureOptions()

TEXT_DIGEST_PREFIX = "t:"  # the feature of a whole normalised text (see ``repeat_signal``)
MAX_FEATURE_CHARS = 48  # longer features are cut to this many characters
_MAX_SCAN_CHARS = 4000  # only the first characters of a body are read for features
_MAX_WORD_CHARS = 30
_MAX_CHAR_NGRAM_WORDS = 60

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"), None)
_TAG_RE = re.compile(r"<[^<>]{0,1000}>")
_HREF_RE = re.compile(r"""href\s*=\s*["']?([^"'\s<>]{1,500})""", re.IGNORECASE)
_APOSTROPHE_RE = re.compile(r"(?<=\w)['\u2019](?=\w)")
_WORD_RE = re.compile(r"[^\W_]+")
_REPEAT_RE = re.compile(r"(.)\1{2,}")
_SPACE_RE = re.compile(r"\s+")
_TLDS = (
    "com|net|org|info|biz|co|us|uk|de|ru|me|tv|ly|gl|io|be|tk|in|it|fr|es|br|pl|nl|"
    "eu|ca|au|xyz|online|site|club|top|am|fm|to|cc|ws|mx|jp|cn"
)
_URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']{1,300}"
    r"|(?<![\w.@-])[a-z0-9][a-z0-9-]{0,62}(?:\.[a-z0-9-]{1,63}){0,4}\.(?:" + _TLDS + r")\b"
    r"(?:/[^\s<>\"']{0,300})?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Text:
    """A body reduced to what the feature extractors read."""

    text: str  # tags removed, entities decoded, NFKC, invisible characters dropped
    links: tuple[str, ...]  # every link found: hrefs and bare URLs / domain names


def _clean(body: str) -> _Text:
    raw = body[:_MAX_SCAN_CHARS]
    hrefs = [html.unescape(h) for h in _HREF_RE.findall(raw)] if "<" in raw else []
    text = _TAG_RE.sub(" ", raw) if "<" in raw else raw
    for _ in range(2):  # "&amp;#39;" is doubly escaped in the wild
        if "&" not in text:
            break
        text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    bare = _URL_RE.findall(text)
    seen = {u.lower().rstrip("/") for u in bare}
    links = tuple(bare) + tuple(h for h in hrefs if h.lower().rstrip("/") not in seen)
    return _Text(text=text, links=links)


def count_links(body: str) -> int:
    """Number of links in a raw body: ``href`` attributes plus bare URLs and domain names."""
    return len(_clean(body).links)


def _host(url: str) -> str:
    """The lower-cased host of a URL or bare domain, without ``www.`` and port."""
    u = url.strip().lower()
    if "://" in u:
        u = u.split("://", 1)[1]
    u = re.split(r"[/?#:]", u, maxsplit=1)[0]
    if u.startswith("www."):
        u = u[4:]
    u = "".join(ch for ch in u[:MAX_FEATURE_CHARS] if ch.isalnum() or ch in ".-")  # no NUL, no surrogates
    return u.strip(".")


def _words(text: str) -> list[str]:
    text = _APOSTROPHE_RE.sub("", text.casefold())
    out = []
    for w in _WORD_RE.findall(text):
        if len(w) > _MAX_WORD_CHARS:
            w = w[:_MAX_WORD_CHARS]
        if len(w) > 2:
            w = _REPEAT_RE.sub(r"\1\1", w)
        out.append(w)
    return out


def _bucket(value: float, edges: Sequence[float]) -> int:
    """Index of the first edge above ``value`` (len(edges) if none)."""
    for i, edge in enumerate(edges):
        if value < edge:
            return i
    return len(edges)


def _meta(body: str, cleaned: _Text, words: Sequence[str]) -> list[str]:
    text = cleaned.text
    letters = [c for c in text if c.isalpha()]
    upper = sum(1 for c in letters if c.isupper())
    caps = upper / len(letters) if letters else 0.0
    n_links = len(cleaned.links)
    out = [
        f"meta:links={min(n_links, 3)}",
        f"meta:len={_bucket(len(body), (10, 30, 60, 120, 250, 500, 1000))}",
        f"meta:words={_bucket(len(words), (2, 4, 8, 16, 32, 64))}",
        f"meta:caps={_bucket(caps, (0.05, 0.2, 0.5, 0.8))}",
        f"meta:excl={_bucket(text.count('!'), (1, 2, 4))}",
    ]
    if any(c.isdigit() for c in text):
        out.append("meta:digits")
    if not letters:
        out.append("meta:no_letters")
    if "<" in body and _TAG_RE.search(body[:_MAX_SCAN_CHARS]):
        out.append("meta:html")
    if any(ord(c) > 0x2000 and unicodedata.category(c) == "So" for c in text):
        out.append("meta:symbols")
    return out


def features(
    body: str,
    author: str,
    url: str | None,
    *,
    options: FeatureOptions = FEATURE_OPTIONS,
) -> list[str]:
    """The deduplicated text-model features of a comment, at most ``options.max_features``.

    ``body`` is the raw text the author sent (HTML and entities included),
    ``author`` the name typed in the form, ``url`` the website field.  Families,
    in priority order (the cap drops the tail): ``meta:`` facts (links, length,
    capitals, digits...), ``a:`` author-name words, ``u:`` website host, ``l:``
    hosts linked from the body, ``t:`` a digest of the normalised text (exact
    repeats), ``o:`` the opening words (templates), ``w:`` words, ``b:`` word
    pairs, ``c:`` character n-grams of the words.  Every feature is at most ``MAX_FEATURE_CHARS`` characters.
    """
    cleaned = _clean(body)
    words = _words(cleaned.text)
    feats: dict[str, None] = {}
    cap = options.max_features

    def add(name: str) -> None:
        if len(feats) < cap:
            feats.setdefault(name[:MAX_FEATURE_CHARS], None)

    if options.meta:
        for name in _meta(body, cleaned, words):
            add(name)
    if options.author:
        for w in _words(unicodedata.normalize("NFKC", html.unescape(author[:200]))):
            add("a:" + w)
    if options.hosts:
        if url:
            add("u:" + _host(url))
        for link in cleaned.links:
            add("l:" + _host(link))
    if options.text_hash and words:
        digest = hashlib.blake2b(" ".join(words).encode(), digest_size=8).hexdigest()
        add(TEXT_DIGEST_PREFIX + digest)
    if options.opening and len(words) >= options.opening:
        add("o:" + " ".join(words[: options.opening]))
    if options.unigrams:
        for w in words:
            add("w:" + w)
    if options.bigrams:
        for a, b in zip(words, words[1:]):
            add("b:" + a + " " + b)
    if options.trigrams:
        for a, b, c in zip(words, words[1:], words[2:]):
            add("b:" + a + " " + b + " " + c)
    if options.char_ngrams and options.char_scope == "text":
        lo, hi = options.char_ngrams
        flat = " " + _SPACE_RE.sub(" ", cleaned.text.casefold()).strip() + " "
        for i in range(len(flat)):
            if len(feats) >= cap:
                break
            for n in range(lo, hi + 1):
                if i + n <= len(flat):
                    add("c:" + flat[i : i + n])
    elif options.char_ngrams:
        lo, hi = options.char_ngrams
        for w in dict.fromkeys(words[: _MAX_CHAR_NGRAM_WORDS * 4]).keys():
            if len(feats) >= cap:
                break
            padded = " " + w + " "
            for n in range(lo, hi + 1):
                for i in range(len(padded) - n + 1):
                    add("c:" + padded[i : i + n])
    return list(feats)


# ---------------------------------------------------------------------------
# Text model


@dataclass(frozen=True)
class TextModel:
    """Counts of the text model: documents learned per class and per-feature document counts.

    ``counts`` maps a feature to (spam documents, ham documents) containing it;
    only the features of the comment being scored need be present.
    """

    spam_docs: int
    ham_docs: int
    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelParams:
    """How ``text_probability`` turns counts into a probability (the bench compares variants).

    ``family_norm=0`` with ``temperature=1`` and ``bias=0`` is plain naive Bayes.
    """

    alpha: float = 0.5  # Lidstone smoothing of each class's per-feature document frequency
    family_norm: float = 0.5  # a family's summed log-likelihood ratio is divided by (its size) ** family_norm
    independent: tuple[str, ...] = ("meta",)  # families summed as they are: distinct facts, not overlapping n-grams
    temperature: float = 2.2  # Platt scaling fitted on the CV replays of 01-03 (bench/spam_tune.py --fit)
    bias: float = -2.9  # idem
    prior: bool = True  # add the class prior log(spam_docs / ham_docs)


MODEL_PARAMS = ModelParams()

#: What an untrained model answers: no opinion.
NEUTRAL_PROBABILITY = 0.5
_MAX_LOG_ODDS = 30.0


def _sigmoid(x: float) -> float:
    x = max(-_MAX_LOG_ODDS, min(_MAX_LOG_ODDS, x))
    return 1.0 / (1.0 + math.exp(-x))


def text_probability(
    model: TextModel,
    feats: Sequence[str],
    *,
    params: ModelParams = MODEL_PARAMS,
) -> float:
    """The text model's probability in [0, 1] that a comment with ``feats`` is spam.

    Features never seen in either class carry no evidence and are skipped.
    With no training data in one of the classes the answer is
    ``NEUTRAL_PROBABILITY`` (0.5), which by itself never holds a comment
    (``text_signal`` only counts probabilities above one half).
    """
    n_spam = max(model.spam_docs, 0)
    n_ham = max(model.ham_docs, 0)
    if n_spam == 0 or n_ham == 0:
        return NEUTRAL_PROBABILITY
    counts = model.counts
    a = params.alpha
    ratio = (n_ham + 2 * a) / (n_spam + 2 * a)  # P(f|spam) / P(f|ham) = (s + a) / (h + a) * ratio
    sums: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for f in dict.fromkeys(feats):
        c = counts.get(f)
        if c is None:
            continue
        s, h = c
        if not (0 <= s <= n_spam and 0 <= h <= n_ham):  # only an inconsistent table gets here
            s, h = min(max(s, 0), n_spam), min(max(h, 0), n_ham)
        if s + h == 0:
            continue
        family = f.partition(":")[0]
        sums[family] = sums.get(family, 0.0) + math.log((s + a) * ratio / (h + a))
        sizes[family] = sizes.get(family, 0) + 1
    x = 0.0
    for family, total in sums.items():
        if family not in params.independent:
            total /= sizes[family] ** params.family_norm
        x += total
    x /= params.temperature
    x += params.bias
    if params.prior:
        x += math.log(n_spam / n_ham)
    return _sigmoid(x)


@dataclass(frozen=True)
class CountDelta:
    """What to add to the model's tables for one learned (or unlearned) verdict.

    Apply as ``spam_totals += (spam_docs, ham_docs)`` and, for each
    ``(feature, spam, ham)`` in ``rows``::

        INSERT INTO spam_features (feature, spam, ham) VALUES (:f, :spam, :ham)
        ON CONFLICT (feature) DO UPDATE
        SET spam = spam_features.spam + :spam, ham = spam_features.ham + :ham
    """

    spam_docs: int
    ham_docs: int
    rows: tuple[tuple[str, int, int], ...]


def learn_delta(feats: Iterable[str], is_spam: bool, sign: int = 1) -> CountDelta:
    """The count changes that learn (``sign=1``) or unlearn (``sign=-1``) one verdict."""
    if sign not in (1, -1):
        raise ValueError("sign must be 1 or -1")
    ds, dh = (sign, 0) if is_spam else (0, sign)
    return CountDelta(ds, dh, tuple((f, ds, dh) for f in dict.fromkeys(feats)))


class MemoryCounts:
    """The model's two tables held in memory: the reference for the SQL store, the bench and tests."""

    def __init__(self) -> None:
        self.spam_docs = 0
        self.ham_docs = 0
        self.counts: dict[str, tuple[int, int]] = {}

    def apply(self, delta: CountDelta) -> None:
        """Add a ``CountDelta``; rows falling to zero are removed."""
        self.spam_docs += delta.spam_docs
        self.ham_docs += delta.ham_docs
        for f, ds, dh in delta.rows:
            s, h = self.counts.get(f, (0, 0))
            s, h = s + ds, h + dh
            if s == 0 and h == 0:
                self.counts.pop(f, None)
            else:
                self.counts[f] = (s, h)

    def learn(self, feats: Iterable[str], is_spam: bool, sign: int = 1) -> None:
        """Learn (or with ``sign=-1`` unlearn) one verdict."""
        self.apply(learn_delta(feats, is_spam, sign))

    def model(self, feats: Iterable[str]) -> TextModel:
        """The ``TextModel`` restricted to ``feats``, as one ``IN (...)`` query would return it."""
        counts = self.counts
        return TextModel(self.spam_docs, self.ham_docs, {f: counts[f] for f in feats if f in counts})


def prune_level(rows: Iterable[tuple[str, int, int]], cap: int = DEFAULT_VOCABULARY_CAP) -> int:
    """The total count ``k`` such that ``DELETE ... WHERE spam + ham <= k`` keeps the table within ``cap``.

    Rows whose total is zero or less are always garbage (``k >= 0``).  When the
    table still exceeds ``cap``, ``k`` grows from 1 (features seen once) until
    the remaining rows fit: the rarest features go first and all features of a
    given rarity go together, which leaves room to grow before the next prune.
    """
    if cap < 0:
        raise ValueError("cap must be >= 0")
    histogram: dict[int, int] = {}
    for _, spam, ham in rows:
        total = max(spam + ham, 0)
        histogram[total] = histogram.get(total, 0) + 1
    k = 0
    remaining = sum(histogram.values()) - histogram.get(0, 0)
    for total in sorted(t for t in histogram if t > 0):
        if remaining <= cap:
            break
        k = total
        remaining -= histogram[total]
    return k


def prune_candidates(rows: Iterable[tuple[str, int, int]], cap: int = DEFAULT_VOCABULARY_CAP) -> list[str]:
    """The features to delete so that at most ``cap`` remain (see ``prune_level`` for the rule)."""
    materialised = list(rows)
    k = prune_level(materialised, cap)
    return [f for f, spam, ham in materialised if spam + ham <= k]


# ---------------------------------------------------------------------------
# Signals and their combination


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


# ---------------------------------------------------------------------------
# Labelled corpus (the format ``comments spam train FILE...`` loads)


class CorpusError(ValueError):
    """A labelled corpus file that cannot be read; ``line`` is 1-based."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class LabelledComment:
    """One row of a labelled corpus; ``line`` is where its record starts in the file."""

    comment_id: str
    author: str
    date: datetime | None
    content: str
    is_spam: bool
    line: int


CORPUS_COLUMNS = ("COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS")


def _decoded_lines(path: str, handle: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(path, number, f"bytes that are not UTF-8 at column {exc.start + 1}") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        if "\x00" in text:
            raise CorpusError(path, number, "NUL byte")
        yield text


def read_labelled_csv(path: str | Path) -> Iterator[LabelledComment]:
    """The comments of a labelled CSV file (columns COMMENT_ID, AUTHOR, DATE, CONTENT, CLASS).

    Fields may hold commas, quotes and newlines (RFC 4180 quoting).  DATE is
    ISO 8601 or empty; CLASS is 1 for spam and 0 for not spam.  Any problem
    raises ``CorpusError`` with the line number.
    """
    name = str(path)
    with open(path, "rb") as handle:
        lines = _decoded_lines(name, handle)
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise CorpusError(name, reader.line_num, f"bad CSV: {exc}") from None
        if header is None:
            raise CorpusError(name, 1, "empty file: no header")
        columns = [h.strip().upper() for h in header]
        missing = [c for c in CORPUS_COLUMNS if c not in columns]
        if missing:
            raise CorpusError(name, 1, f"missing column(s): {', '.join(missing)}")
        index = {c: columns.index(c) for c in CORPUS_COLUMNS}
        width = len(columns)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:
                raise CorpusError(name, reader.line_num, f"bad CSV: {exc}") from None
            if row is None:
                return
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != width:
                raise CorpusError(name, start, f"expected {width} fields, found {len(row)}")
            label = row[index["CLASS"]].strip()
            if label not in ("0", "1"):
                raise CorpusError(name, start, f"CLASS must be 0 or 1, not {label[:20]!r}")
            when = row[index["DATE"]].strip()
            try:
                date = datetime.fromisoformat(when) if when else None
            except ValueError:
                raise CorpusError(name, start, f"DATE is not ISO 8601: {when[:40]!r}") from None
            yield LabelledComment(
                comment_id=row[index["COMMENT_ID"]],
                author=row[index["AUTHOR"]],
                date=date,
                content=row[index["CONTENT"]],
                is_spam=label == "1",
                line=start,
            )


# ---------------------------------------------------------------------------
# Offline replay and its figures (the same functions the live system calls)


def corpus_score(
    counts: MemoryCounts,
    comment: LabelledComment,
    *,
    options: FeatureOptions = FEATURE_OPTIONS,
    params: ModelParams = MODEL_PARAMS,
    links: bool = True,
    repeats: bool = True,
) -> tuple[float, list[str]]:
    """Score a corpus comment with every signal a corpus has: the text model, repeats and links."""
    feats = features(comment.content, comment.author, None, options=options)
    model = counts.model(feats)
    signals = [text_signal(text_probability(model, feats, params=params))]
    if repeats:
        signals.append(repeat_signal(model, feats))
    if links:
        signals.append(link_signal(count_links(comment.content), len(comment.content)))
    return combine(signals)


def in_time_order(rows: Sequence[LabelledComment]) -> list[LabelledComment]:
    """The rows sorted by date; an undated row keeps its place right after the dated row before it in the file."""
    keyed = []
    last = datetime.min
    for i, row in enumerate(rows):
        if row.date is not None:
            last = row.date.replace(tzinfo=None)
        keyed.append((last, i, row))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in keyed]


def replay(
    train: Iterable[LabelledComment],
    stream: Iterable[LabelledComment],
    *,
    options: FeatureOptions = FEATURE_OPTIONS,
    params: ModelParams = MODEL_PARAMS,
    links: bool = True,
    repeats: bool = True,
) -> list[tuple[float, bool]]:
    """Online replay: learn ``train``, then for each comment of ``stream`` score it, then learn its label.

    Returns (score, is_spam) in stream order; pass ``in_time_order(...)`` rows
    as the stream to replay a site's history.
    """
    counts = MemoryCounts()
    for c in train:
        counts.learn(features(c.content, c.author, None, options=options), c.is_spam)
    out = []
    for c in stream:
        score, _ = corpus_score(counts, c, options=options, params=params, links=links, repeats=repeats)
        out.append((score, c.is_spam))
        counts.learn(features(c.content, c.author, None, options=options), c.is_spam)
    return out


@dataclass(frozen=True)
class Evaluation:
    """The spam-class confusion matrix of decisions at one threshold, and its figures."""

    tp: int  # spam filed as spam
    fp: int  # ham filed as spam
    fn: int  # spam let through
    tn: int  # ham let through

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        """False-positive rate: ham filed as spam / all ham."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def evaluate(scores: Iterable[tuple[float, bool]], threshold: float = DEFAULT_SPAM_THRESHOLD) -> Evaluation:
    """Decisions ``score >= threshold`` ("filed as spam") against the true labels."""
    tp = fp = fn = tn = 0
    for score, is_spam in scores:
        filed = score >= threshold
        if is_spam:
            tp += filed
            fn += not filed
        else:
            fp += filed
            tn += not filed
    return Evaluation(tp, fp, fn, tn)
