"""The text model: naive Bayes over the features' document counts, learned and unlearned as deltas, pruned to a cap."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Vocabulary cap of the feature table; see ``prune_level``.
DEFAULT_VOCABULARY_CAP = 200_000


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
    temperature: float = 2.35  # Platt scaling fitted on the CV replays of 01-03 (bench/spam_tune.py --fit)
    bias: float = -3.13  # idem
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
