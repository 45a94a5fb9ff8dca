"""Spam scoring: text features, an online naive Bayes text model, signals and their combination.

The package is in four modules (``textfeatures``, ``model``, ``signals``, ``corpus``)
and everything in it is pure: plain values in, plain values out, no clock reads,
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

from .corpus import (
    CORPUS_COLUMNS,
    CorpusError,
    Evaluation,
    LabelledComment,
    corpus_score,
    evaluate,
    in_time_order,
    read_labelled_csv,
    replay,
)
from .textfeatures import (
    FEATURE_OPTIONS,
    MAX_FEATURE_CHARS,
    TEXT_DIGEST_PREFIX,
    FeatureOptions,
    count_links,
    features,
)
from .model import (
    DEFAULT_VOCABULARY_CAP,
    MODEL_PARAMS,
    NEUTRAL_PROBABILITY,
    CountDelta,
    MemoryCounts,
    ModelParams,
    TextModel,
    learn_delta,
    prune_candidates,
    prune_level,
    text_probability,
)
from .signals import (
    DEFAULT_HOLD_THRESHOLD,
    DEFAULT_SPAM_THRESHOLD,
    MAX_SIGNAL_SCORE,
    MIN_HUMAN_SECONDS,
    NO_SIGNAL,
    REASON_MIN_SCORE,
    Signal,
    combine,
    duplicate_signal,
    form_token_signal,
    history_signal,
    honeypot_signal,
    link_signal,
    repeat_signal,
    text_signal,
    words_signal,
)

__all__ = [
    "CORPUS_COLUMNS", "DEFAULT_HOLD_THRESHOLD", "DEFAULT_SPAM_THRESHOLD", "DEFAULT_VOCABULARY_CAP",
    "FEATURE_OPTIONS", "MAX_FEATURE_CHARS", "MAX_SIGNAL_SCORE", "MIN_HUMAN_SECONDS", "MODEL_PARAMS",
    "NEUTRAL_PROBABILITY", "NO_SIGNAL", "REASON_MIN_SCORE", "TEXT_DIGEST_PREFIX",
    "CorpusError", "CountDelta", "Evaluation", "FeatureOptions", "LabelledComment", "MemoryCounts",
    "ModelParams", "Signal", "TextModel",
    "combine", "corpus_score", "count_links", "duplicate_signal", "evaluate", "features", "form_token_signal",
    "history_signal", "honeypot_signal", "in_time_order", "learn_delta", "link_signal", "prune_candidates",
    "prune_level", "read_labelled_csv", "repeat_signal", "replay", "text_probability", "text_signal",
    "words_signal",
]
