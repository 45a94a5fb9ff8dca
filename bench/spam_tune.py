"""Tune and evaluate the spam scorer on the labelled YouTube corpus with an online replay.

The replay is how a live site learns: train on some files (every comment
learned as a moderator verdict), then take the comments of the evaluation
files in time order, score each one with ``features`` + ``text_probability``
+ ``repeat_signal`` + ``combine`` (text model, repeats and links: the corpus has no honeypot, token or
history), record the decision at the spam threshold, then learn its true
label (``comments.spam.replay``).

    python bench/spam_tune.py             # leave-one-file-out CV inside 01-03 of the frozen design + speed
    python bench/spam_tune.py --sweep     # the frozen design's CV figures at every threshold
    python bench/spam_tune.py --fit       # refit the text model's Platt scaling on the CV replays
    python bench/spam_tune.py --compare   # CV of every design variant that was tried
    python bench/spam_tune.py --final     # the one final figure: train 01-03, replay 04 then 05

Files 04 and 05 are read only with ``--final``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comments import spam  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "spam"
TUNING_FILES = ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv", "Youtube03-LMFAO.csv")
FINAL_FILES = ("Youtube04-Eminem.csv", "Youtube05-Shakira.csv")
MAX_CV_FPR = 0.01  # the spam threshold is the best pooled CV F1 at a pooled CV false-positive rate within this

Corpus = dict[str, list[spam.LabelledComment]]
Scores = list[tuple[float, bool]]


def _chi2_sf(x2: float, dof: int) -> float:
    """P(chi-square with an even number ``dof`` of degrees of freedom > x2), in log space against underflow."""
    m = x2 / 2.0
    if m <= 0.0:
        return 1.0
    log_term = -m
    total = math.exp(log_term)
    for i in range(1, dof // 2):
        log_term += math.log(m / i)
        total += math.exp(log_term)
    return min(total, 1.0)


def robinson_probability(model: spam.TextModel, feats: Sequence[str], strength: float, min_dev: float) -> float:
    """A tried alternative to ``spam.text_probability``: Robinson's per-feature estimates, Fisher's combination."""
    if model.spam_docs <= 0 or model.ham_docs <= 0:
        return spam.NEUTRAL_PROBABILITY
    probs = []
    for f in dict.fromkeys(feats):
        s, h = model.counts.get(f, (0, 0))
        if s + h <= 0:
            continue
        b, g = s / model.spam_docs, h / model.ham_docs
        p = (strength * 0.5 + (s + h) * b / (b + g)) / (strength + s + h)
        if abs(p - 0.5) >= min_dev:
            probs.append(p)
    if not probs:
        return spam.NEUTRAL_PROBABILITY
    spamminess = 1.0 - _chi2_sf(-2.0 * sum(math.log(max(1.0 - p, 1e-9)) for p in probs), 2 * len(probs))
    hamminess = 1.0 - _chi2_sf(-2.0 * sum(math.log(max(p, 1e-9)) for p in probs), 2 * len(probs))
    return min(1.0, max(0.0, (1.0 + spamminess - hamminess) / 2.0))


@dataclass(frozen=True)
class Design:
    """One scorer design: feature families, model parameters and whether links are a signal.

    ``robinson`` = (strength, min_dev) swaps the text model for ``robinson_probability``.
    """

    name: str
    options: spam.FeatureOptions = spam.FEATURE_OPTIONS
    params: spam.ModelParams = spam.MODEL_PARAMS
    links: bool = True
    robinson: tuple[float, float] | None = None
    repeats: bool = True

    def replay(self, train: Sequence[spam.LabelledComment], stream: Sequence[spam.LabelledComment]) -> Scores:
        if self.robinson is None:
            return spam.replay(train, stream, options=self.options, params=self.params, links=self.links,
                               repeats=self.repeats)
        counts = spam.MemoryCounts()
        for c in train:
            counts.learn(spam.features(c.content, c.author, None, options=self.options), c.is_spam)
        out = []
        for c in stream:
            feats = spam.features(c.content, c.author, None, options=self.options)
            p = robinson_probability(counts.model(feats), feats, *self.robinson)
            out.append((spam.combine([spam.text_signal(p)])[0], c.is_spam))
            counts.learn(feats, c.is_spam)
        return out

    def ranking(self) -> Design:
        """The same design scored by the text model's evidence only, unsaturated (for threshold-free figures)."""
        if self.robinson is not None:
            return self
        return replace(self, params=replace(self.params, temperature=1000.0, bias=0.0, prior=False), links=False,
                       repeats=False)


FROZEN = Design("frozen: families, char 3-4, opening 3, self-promotion, meta independent, links, repeats")

_WORDS = spam.FeatureOptions(char_ngrams=None, author=False, hosts=False, meta=False, text_hash=False, opening=0)
_SESSION1 = spam.FeatureOptions(opening=0, promotion=False)  # the first frozen design (before the opening words)
_PLAIN = spam.ModelParams(alpha=1.0, family_norm=0.0, independent=(), temperature=1.0, bias=0.0)
_FAMILIES = spam.ModelParams(independent=())
VARIANTS: list[Design] = [
    Design("NB words+bigrams (plain baseline)", _WORDS, _PLAIN, links=False),
    Design("NB words only", replace(_WORDS, bigrams=False), _PLAIN, links=False),
    Design("NB words+bigrams alpha .5", _WORDS, replace(_PLAIN, alpha=0.5), links=False),
    Design("NB words+bigrams / sqrt(n)", _WORDS, replace(_PLAIN, family_norm=0.5), links=False),
    Design("NB +char 3-5", replace(_WORDS, char_ngrams=(3, 5)), _PLAIN, links=False),
    Design("NB all families (sum)", replace(_SESSION1, char_ngrams=(3, 5)), _PLAIN, links=False),
    Design("Robinson/Fisher words+bigrams", _WORDS, links=False, robinson=(1.0, 0.0)),
    Design("Robinson/Fisher all families", replace(_SESSION1, char_ngrams=(3, 5)), links=False,
           robinson=(1.0, 0.0)),
    Design("Robinson/Fisher all, min_dev .1", replace(_SESSION1, char_ngrams=(3, 5)), links=False,
           robinson=(1.0, 0.1)),
    Design("families sqrt, char 3-5, alpha 1", replace(_SESSION1, char_ngrams=(3, 5)),
           replace(_FAMILIES, alpha=1.0), links=False),
    Design("families sqrt, char 3-5", replace(_SESSION1, char_ngrams=(3, 5)), _FAMILIES, links=False),
    Design("families sqrt, char 3-4", _SESSION1, _FAMILIES, links=False),
    Design("families sqrt, char 4-4", replace(_SESSION1, char_ngrams=(4, 4)), _FAMILIES, links=False),
    Design("families sqrt, char 2-4", replace(_SESSION1, char_ngrams=(2, 4)), _FAMILIES, links=False),
    Design("families sqrt, char 3-5 across text", replace(_SESSION1, char_ngrams=(3, 5), char_scope="text"),
           _FAMILIES, links=False),
    Design("families, meta independent, char 3-5", replace(_SESSION1, char_ngrams=(3, 5)), links=False),
    Design("first frozen design (no opening, no repeats)", _SESSION1, repeats=False),
    Design("first frozen design + repeats", _SESSION1),
    Design("first frozen design + opening 3", replace(_SESSION1, opening=3), repeats=False),
    Design("frozen, opening 4", spam.FeatureOptions(opening=4)),
    Design("frozen, opening 5", spam.FeatureOptions(opening=5)),
    Design("frozen text model without links", links=False),
    Design("frozen + word trigrams", spam.FeatureOptions(trigrams=True)),
    Design("frozen, no char n-grams", spam.FeatureOptions(char_ngrams=None)),
    Design("frozen, no meta", spam.FeatureOptions(meta=False)),
    Design("frozen, no author", spam.FeatureOptions(author=False)),
    Design("frozen, no text digest", spam.FeatureOptions(text_hash=False)),
    Design("frozen, cap 200 features", spam.FeatureOptions(max_features=200)),
    Design("frozen, cap 800 features", spam.FeatureOptions(max_features=800)),
    Design("frozen, family_norm .7", params=replace(spam.MODEL_PARAMS, family_norm=0.7)),
    Design("frozen, alpha 1", params=replace(spam.MODEL_PARAMS, alpha=1.0)),
    Design("frozen without the self-promotion facts", spam.FeatureOptions(promotion=False),
           replace(spam.MODEL_PARAMS, temperature=2.2, bias=-2.9)),  # its own Platt scaling
    FROZEN,
]


def load(name: str) -> list[spam.LabelledComment]:
    """The comments of one corpus file."""
    return list(spam.read_labelled_csv(DATA / name))


def cross_validate(design: Design, files: Corpus) -> list[tuple[str, Scores]]:
    """Leave-one-file-out: train on the other tuning files, replay the held-out one in time order."""
    out = []
    for held in files:
        train = [c for name, rows in files.items() if name != held for c in rows]
        out.append((held, design.replay(train, spam.in_time_order(files[held]))))
    return out


def fmt(e: spam.Evaluation) -> str:
    return f"P {e.precision:.3f}  R {e.recall:.3f}  F1 {e.f1:.4f}  FPR {100 * e.fpr:.2f} %"


def fmt_matrix(e: spam.Evaluation) -> str:
    return f"[TP {e.tp} FP {e.fp} FN {e.fn} TN {e.tn}]"


def mean(folds: Sequence[tuple[str, Scores]], threshold: float) -> tuple[float, float]:
    """Mean over folds of (F1, FPR) at ``threshold``."""
    evs = [spam.evaluate(s, threshold) for _, s in folds]
    return statistics.fmean(e.f1 for e in evs), statistics.fmean(e.fpr for e in evs)


def pooled(folds: Sequence[tuple[str, Scores]]) -> Scores:
    return [x for _, s in folds for x in s]


THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)] + [0.97, 0.99]


def best_threshold(scores: Scores) -> float:
    """The threshold with the best F1 among those with FPR <= MAX_CV_FPR (ties: the higher)."""
    ok = [(spam.evaluate(scores, t).f1, t) for t in THRESHOLDS if spam.evaluate(scores, t).fpr <= MAX_CV_FPR]
    return max(ok)[1] if ok else THRESHOLDS[-1]


def oracle_f1(scores: Scores, max_fpr: float = MAX_CV_FPR) -> float:
    """The best F1 over every threshold whose FPR <= max_fpr: ranking quality, free of calibration."""
    ordered = sorted(scores, key=lambda x: -x[0])
    n_ham = sum(1 for _, y in scores if not y)
    n_spam = len(scores) - n_ham
    tp = fp = 0
    best = 0.0
    i = 0
    while i < len(ordered):
        t = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == t:
            tp, fp = (tp + 1, fp) if ordered[i][1] else (tp, fp + 1)
            i += 1
        if fp <= max_fpr * n_ham and tp:
            p, r = tp / (tp + fp), tp / n_spam
            best = max(best, 2 * p * r / (p + r))
    return best


def auc(scores: Scores) -> float:
    """Area under the ROC curve (ties count one half)."""
    ordered = sorted(scores, key=lambda x: x[0])
    n_spam = sum(1 for _, y in scores if y)
    n_ham = len(scores) - n_spam
    rank_sum = 0.0
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        rank_sum += sum(1 for k in range(i, j) if ordered[k][1]) * (i + j + 1) / 2
        i = j
    return (rank_sum - n_spam * (n_spam + 1) / 2) / (n_spam * n_ham)


def report_cv(design: Design, files: Corpus) -> None:
    folds = cross_validate(design, files)
    t = spam.DEFAULT_SPAM_THRESHOLD
    print(f"design {design.name}")
    print(f"leave-one-file-out online replay inside 01-03, decisions at the default spam threshold {t}:")
    for held, s in folds:
        e = spam.evaluate(s, t)
        print(f"  held out {held:24s} {fmt(e)}  {fmt_matrix(e)}")
    f1, fpr = mean(folds, t)
    print(f"  mean of folds                     F1 {f1:.4f}  FPR {100 * fpr:.2f} %")
    e = spam.evaluate(pooled(folds), t)
    print(f"  pooled                            {fmt(e)}  {fmt_matrix(e)}")
    hold = spam.evaluate(pooled(folds), spam.DEFAULT_HOLD_THRESHOLD)
    print(
        f"  at the hold threshold {spam.DEFAULT_HOLD_THRESHOLD}: {100 * hold.recall:.1f} % of spam and "
        f"{100 * hold.fpr:.1f} % of ham are held or filed"
    )


def report_sweep(design: Design, files: Corpus) -> None:
    folds = cross_validate(design, files)
    print(f"design {design.name}: CV figures by spam threshold")
    for t in THRESHOLDS:
        f1, fpr = mean(folds, t)
        e = spam.evaluate(pooled(folds), t)
        print(f"  @{t:<5} pooled {fmt(e)} {fmt_matrix(e)}   mean F1 {f1:.4f} FPR {100 * fpr:.2f} %")
    print(f"  best pooled F1 with pooled FPR <= {100 * MAX_CV_FPR:.0f} %: threshold {best_threshold(pooled(folds))}")


def report_compare(files: Corpus) -> None:
    print("leave-one-file-out CV inside 01-03 (3 folds). Columns:")
    print("  ranking: the text model's evidence alone (unscaled, no prior, no links): mean over folds of the")
    print("           best F1 at FPR <= 1 % (each fold its own threshold), and mean AUC;")
    print("  common:  the design's combined score: pooled F1 / FPR at the best common threshold")
    print("           with pooled FPR <= 1 % (with the frozen Platt scaling, so only the frozen design is calibrated).")
    for design in VARIANTS:
        ranked = cross_validate(design.ranking(), files)
        folds = cross_validate(design, files)
        o = statistics.fmean(oracle_f1(s) for _, s in ranked)
        a = statistics.fmean(auc(s) for _, s in ranked)
        t = best_threshold(pooled(folds))
        e = spam.evaluate(pooled(folds), t)
        print(
            f"  {design.name:44s} ranking F1 {o:.4f} AUC {a:.4f} | "
            f"common @{t:<4} F1 {e.f1:.4f} FPR {100 * e.fpr:.2f} %"
        )


def calibrate(design: Design, files: Corpus) -> tuple[float, float]:
    """Platt scaling of the text model on the CV replays: (temperature, bias) of maximum likelihood.

    The model's evidence e (its log-odds without prior or scaling) becomes
    e / temperature + bias + log(spam_docs / ham_docs): a logistic regression
    of the true labels on e with the prior as a fixed offset, fitted by Newton's
    method with step halving.
    """
    raw = replace(design.params, temperature=1.0, bias=0.0, prior=False)
    points: list[tuple[float, float, bool]] = []  # (evidence, prior, is_spam)
    for held in files:
        counts = spam.MemoryCounts()
        for name, rows in files.items():
            if name != held:
                for c in rows:
                    counts.learn(spam.features(c.content, c.author, None, options=design.options), c.is_spam)
        for c in spam.in_time_order(files[held]):
            feats = spam.features(c.content, c.author, None, options=design.options)
            p = min(max(spam.text_probability(counts.model(feats), feats, params=raw), 1e-15), 1 - 1e-15)
            points.append((math.log(p / (1 - p)), math.log(counts.spam_docs / counts.ham_docs), c.is_spam))
            counts.learn(feats, c.is_spam)

    def loss(w: float, b: float) -> float:
        total = 0.0
        for e, prior, y in points:
            z = max(-35.0, min(35.0, w * e + b + prior))
            total += math.log1p(math.exp(-z if y else z))
        return total

    w, b = 0.1, 0.0
    for _ in range(100):
        gw = gb = hww = hwb = hbb = 0.0
        for e, prior, y in points:
            z = max(-35.0, min(35.0, w * e + b + prior))
            p = 1.0 / (1.0 + math.exp(-z))
            err = p - (1.0 if y else 0.0)
            v = p * (1.0 - p) + 1e-12
            gw, gb = gw + err * e, gb + err
            hww, hwb, hbb = hww + v * e * e, hwb + v * e, hbb + v
        det = hww * hbb - hwb * hwb
        dw, db = (hbb * gw - hwb * gb) / det, (hww * gb - hwb * gw) / det
        step, current = 1.0, loss(w, b)
        while step > 1e-6 and loss(w - step * dw, b - step * db) > current:
            step /= 2
        w, b = w - step * dw, b - step * db
        if abs(step * dw) + abs(step * db) < 1e-10:
            break
    return 1.0 / w, b


def report_speed(design: Design, files: Corpus) -> None:
    """p50/p99 of one comment's scoring: features + counts lookup + text_probability + link count + combine."""
    counts = spam.MemoryCounts()
    rows = [c for rows in files.values() for c in rows]
    for c in rows:
        counts.learn(spam.features(c.content, c.author, None, options=design.options), c.is_spam)
    runs = 5
    per_comment: list[list[int]] = [[] for _ in rows]
    for _ in range(runs):
        for i, c in enumerate(rows):
            t0 = time.perf_counter_ns()
            spam.corpus_score(counts, c, options=design.options, params=design.params, links=design.links)
            per_comment[i].append(time.perf_counter_ns() - t0)

    def pct(values: list[int], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(int(len(ordered) * q), len(ordered) - 1)] / 1000

    raw = [t for ts in per_comment for t in ts]
    best = [min(ts) for ts in per_comment]
    print(f"scoring speed (features + counts lookup + text_probability + links + combine), {len(rows)} comments:")
    for label, values in ((f"all {len(raw)} scorings:", raw), (f"best of {runs} per comment:", best)):
        p50, p99, top = pct(values, 0.5), pct(values, 0.99), pct(values, 1)
        print(f"  {label:24s} p50 {p50:.0f} us  p99 {p99:.0f} us  max {top:.0f} us")


def report_final(design: Design) -> None:
    train = [c for name in TUNING_FILES for c in load(name)]
    stream = [c for name in FINAL_FILES for c in spam.in_time_order(load(name))]
    scores = design.replay(train, stream)
    print(f"FINAL: train 01-03, replay 04 then 05, each in time order ({len(stream)} comments), design {design.name}")
    e = spam.evaluate(scores, spam.DEFAULT_SPAM_THRESHOLD)
    print(f"  filed as spam (score >= {spam.DEFAULT_SPAM_THRESHOLD}):    {fmt(e)}  {fmt_matrix(e)}")
    e = spam.evaluate(scores, spam.DEFAULT_HOLD_THRESHOLD)
    print(f"  held or filed (score >= {spam.DEFAULT_HOLD_THRESHOLD}):    {fmt(e)}  {fmt_matrix(e)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="the frozen design's CV figures at every threshold")
    parser.add_argument("--fit", action="store_true", help="refit the text model's Platt scaling on the CV replays")
    parser.add_argument("--compare", action="store_true", help="CV figures of every design variant tried")
    parser.add_argument("--final", action="store_true", help="the final replay on 04-05 (run once, design frozen)")
    args = parser.parse_args(argv)
    files = {name: load(name) for name in TUNING_FILES}
    if args.fit:
        temperature, bias = calibrate(FROZEN, files)
        print(f"Platt scaling on the CV replays of 01-03: temperature={temperature:.3f} bias={bias:.3f}")
    elif args.compare:
        report_compare(files)
    elif args.sweep:
        report_sweep(FROZEN, files)
    else:
        report_cv(FROZEN, files)
        report_speed(FROZEN, files)
        if args.final:
            report_final(FROZEN)


if __name__ == "__main__":
    main()
