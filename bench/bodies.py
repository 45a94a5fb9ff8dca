"""Realistic, reproducible comment bodies for the benchmark: 100 to 1,500 characters, some links and inline tags."""

from __future__ import annotations

import random
from dataclasses import dataclass

_SUBJECTS = [
    "The article", "Your second point", "This argument", "The chart in the middle", "The author",
    "My neighbour", "The council", "Everyone I know", "The last paragraph", "The report you cite",
    "Our local paper", "The committee", "A friend of mine", "The data", "This whole debate",
]
_VERBS = [
    "misses", "explains", "gets right", "overstates", "ignores", "captures", "reminds me of",
    "underestimates", "makes sense of", "glosses over", "puts numbers on", "changes my mind about",
]
_OBJECTS = [
    "the cost of housing", "what happened last winter", "how the trains actually run",
    "the long-term effects", "the people who live there", "the budget shortfall", "the turnout",
    "the history of the place", "the price of energy", "the schools in our area", "the harvest",
    "the new bridge", "the hospital waiting lists", "the river flooding", "the election results",
]
_TAILS = [
    "and I think that matters", "but nobody wants to talk about it", "which surprised me",
    "as far as I can tell", "at least in my experience", "though I may be wrong",
    "and the comments here agree", "if you read the whole thing", "more than people admit",
]
_OPENERS = [
    "Great piece.", "Thanks for writing this.", "I have to disagree.", "Interesting.",
    "Long-time reader, first comment.", "Well said.", "Not sure about this one.", "Spot on.",
]
_NAMES = [
    "Ann", "Bob", "Chidi", "Dana", "Élodie", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Noor", "Olga", "Pavel", "Quinn", "Rosa", "Sanjay", "Tove", "Uma", "Viktor",
]
_SITES = ["news.example", "blog.example.org", "data.example.net", "wiki.example", "archive.example.com"]
_TAGS = ["em", "strong", "i", "b", "code", "q", "del"]


@dataclass(frozen=True)
class Body:
    """One generated comment: its text, and whether it holds markup or links (the bleach path)."""

    text: str
    marked_up: bool


def _sentence(rng: random.Random) -> str:
    words = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.5:
        words += f", {rng.choice(_TAILS)}"
    return words + rng.choice([".", ".", ".", "!", "?"])


def _link(rng: random.Random) -> str:
    path = f"/{rng.randint(2015, 2025)}/{rng.randint(1, 12):02d}/story-{rng.randint(1, 9999)}"
    url = f"https://{rng.choice(_SITES)}{path}"
    if rng.random() < 0.5:
        return f"See {url} for the details."
    return f'There is more <a href="{url}">in this report</a>.'


def _tagged(rng: random.Random, sentence: str) -> str:
    words = sentence.split(" ")
    at = rng.randrange(len(words))
    tag = rng.choice(_TAGS)
    words[at] = f"<{tag}>{words[at]}</{tag}>"
    return " ".join(words)


def make_body(rng: random.Random, links: float = 0.2, tags: float = 0.15) -> Body:
    """A body of 100 to 1,500 characters in one to four paragraphs; with the given chances it
    holds a link (bare or <a>) or an inline tag, as real comments sometimes do."""
    with_link = rng.random() < links
    with_tag = rng.random() < tags
    target = int(min(1400 if with_link else 1480, max(100, rng.lognormvariate(5.9, 0.6))))
    paragraphs: list[list[str]] = [[rng.choice(_OPENERS)]]
    length = len(paragraphs[0][0])
    while length < target - 40 or length < 100:
        sentence = _sentence(rng)
        if with_tag and rng.random() < 0.3:
            sentence = _tagged(rng, sentence)
        if length + len(sentence) + 1 > target and length >= 100:
            break
        if rng.random() < 0.15 and len(paragraphs) < 4:
            paragraphs.append([])
        paragraphs[-1].append(sentence)
        length += len(sentence) + 1
    if with_link:
        paragraphs[-1].append(_link(rng))
    if with_tag and not any("<" in s for p in paragraphs for s in p if "<a " not in s):
        paragraphs[-1][-1] = _tagged(rng, paragraphs[-1][-1])
    text = "\n\n".join(" ".join(p) for p in paragraphs if p)
    return Body(text, with_link or with_tag)


def author_name(rng: random.Random) -> str:
    return f"{rng.choice(_NAMES)} {rng.choice(_NAMES)[0]}."


def website(rng: random.Random) -> str | None:
    """An author's website for about one comment in four."""
    return f"https://{rng.choice(_NAMES).lower()}.example" if rng.random() < 0.25 else None
