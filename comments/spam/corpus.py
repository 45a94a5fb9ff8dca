"""Labelled corpora: the CSV format ``comments spam train`` loads, the offline replay and its figures."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .textfeatures import FEATURE_OPTIONS, FeatureOptions, count_links, features
from .model import MODEL_PARAMS, MemoryCounts, ModelParams, text_probability
from .signals import DEFAULT_SPAM_THRESHOLD, combine, link_signal, repeat_signal, text_signal


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
