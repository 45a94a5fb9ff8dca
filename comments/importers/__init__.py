"""Streaming readers of other comment systems' exports (WordPress, Disqus, Isso) as checked records."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from . import disqus, isso, wordpress
from .records import ImportedComment, ImportFormatError, Item, Options, Problem

Parser = Callable[[str | os.PathLike[str], Options | None], Iterator[Item]]

#: The parser of each origin; each yields ImportedComment and Problem items in file order.
PARSERS: dict[str, Parser] = {"wordpress": wordpress.parse, "disqus": disqus.parse, "isso": isso.parse}
#: What an item's position counts in each origin's files, for reports ("line 12", "row 3").
POSITION_UNITS = {"wordpress": "line", "disqus": "line", "isso": "row"}


def parse(origin: str, path: str | os.PathLike[str], options: Options | None = None) -> Iterator[Item]:
    """The items of one export file; ImportFormatError when the file as a whole is unusable."""
    try:
        parser = PARSERS[origin]
    except KeyError:
        raise ValueError(f"unknown origin {origin!r}: one of {', '.join(PARSERS)}") from None
    return parser(path, options)


__all__ = [
    "ImportFormatError", "ImportedComment", "Item", "Options", "PARSERS", "POSITION_UNITS", "Problem",
    "parse",
]
