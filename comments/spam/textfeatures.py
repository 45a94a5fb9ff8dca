"""What the text model reads of a comment: words, word pairs, character n-grams, hosts and a few facts."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


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
    promotion: bool = True  # the two self-promotion facts (``_PROMOTION``) among the meta: facts
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
# Self-promotion, in English, as two facts whose weight the model learns like any other feature:
# "my" before something one publishes ("my new channel", "my latest video"), and a call to go
# and look ("check out", "subscribe", "follow me", "visit"). Words alone miss most of these:
# "my", "new" and "track" are common in kind comments, and every promoter names a different thing.
_PROMOTION = (
    ("meta:my_work", re.compile(
        r"\bmy\s+(?:\w+\s+){0,2}?(?:channel|videos?|vids?|tracks?|songs?|music|blog|page|playlist|profile"
        r"|website|site|account|mixtape|album|covers?|vlogs?|raps?|beats?)\b", re.IGNORECASE)),
    ("meta:go_look", re.compile(
        r"\b(?:check\s+(?:out|my)|subscri\w*|sub\s+(?:to\s+)?(?:me|my)|visit|follow\s+me"
        r"|look\s+(?:me\s+|it\s+)?up|search\s+for|go\s+to|watch\s+my|listen\s+to\s+my)\b", re.IGNORECASE)),
)
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


def _meta(body: str, cleaned: _Text, words: Sequence[str], promotion: bool) -> list[str]:
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
    if promotion:
        out.extend(name for name, pattern in _PROMOTION if pattern.search(text))
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
    capitals, digits, self-promotion...), ``a:`` author-name words, ``u:`` website host, ``l:``
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
        for name in _meta(body, cleaned, words, options.promotion):
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
