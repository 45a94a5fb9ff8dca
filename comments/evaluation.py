"""Spam filter training from labelled files, and an evaluation that replays a corpus through the real pipeline."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import db, spam, store
from .crypto import new_key
from .errors import ApiError
from .models import CommentIn, Rules
from .service import Service
from .settings import Settings

Progress = Callable[[int, int], None]


def read_files(paths: Sequence[str]) -> list[tuple[str, list[spam.LabelledComment]]]:
    """Every row of every file, read and checked before anything is learned (CorpusError stops all)."""
    return [(path, list(spam.read_labelled_csv(path))) for path in paths]


def train_files(database: db.Database, paths: Sequence[str], progress: Progress | None = None) -> int:
    """Learn labelled files as if moderators had judged every comment; all or nothing."""
    rows = [row for _, file_rows in read_files(paths) for row in file_rows]
    total = len(rows)
    report = (lambda done: progress(done, total)) if progress else None
    return store.train_spam(database, ((r.content, r.author, None, r.is_spam) for r in rows), report)


@dataclass(frozen=True)
class Replay:
    evaluation: spam.Evaluation
    held: int  # let through to the queue by the filter's hold threshold (not filed as spam)
    refused: int  # answered 409 by the duplicate rule: never judged
    spam_threshold: float
    hold_threshold: float
    scores: tuple[tuple[float, bool], ...] = ()  # (spam score, truly spam) of every judged comment


def _author_email(author: str) -> str:
    # The corpus has no addresses; one per author name stands in, as a site would see.
    return hashlib.sha256(author.encode("utf-8")).hexdigest()[:20] + "@corpus.example"


def replay(train: Sequence[str], test: Sequence[str], progress: Progress | None = None) -> Replay:
    """Train on `train`, then for each test comment in time order: post it through the real create
    path (fresh temporary SQLite database), note whether it was filed as spam, then apply its true
    label through the real moderator verdict path, as a live site learns."""
    tests = read_files(test)
    with tempfile.TemporaryDirectory(prefix="comments-eval-") as folder:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite:///{Path(folder) / 'eval.db'}", email_key=new_key(),
            rate_limit="1000000/second", sqlite_synchronous="OFF",
        )
        db.upgrade(settings)
        service = Service(settings)
        try:
            rules = Rules(flood_seconds=0)
            store.put_rules(service.db, rules, "evaluation", store.utcnow())
            train_files(service.db, train)
            total = sum(len(rows) for _, rows in tests)
            tp = fp = fn = tn = held = refused = done = 0
            scores: list[tuple[float, bool]] = []
            for path, rows in tests:
                page = "/corpus/" + Path(path).stem
                for row in spam.in_time_order(rows):
                    done += 1
                    moment = row.date.replace(tzinfo=None) if row.date else None
                    data = CommentIn(page=page, body=row.content.strip() or "(empty)", author=row.author.strip()
                                     or "anonymous", email=_author_email(row.author), url=None)
                    ip = f"10.{done // 256 % 256}.{done % 256}.1"
                    try:
                        created = service.create_comment(data, ip, None, now=moment or _last(rows, row))
                    except ApiError as exc:
                        if exc.status != 409:
                            raise
                        refused += 1
                        continue
                    full = store.get_full(service.db, created["id"])
                    filed = full["status"] == "spam"
                    scores.append((float(full["spam_score"]), row.is_spam))
                    held += (not filed) and bool(full["spam_score"] >= rules.hold_threshold)
                    if row.is_spam:
                        tp += filed
                        fn += not filed
                    else:
                        fp += filed
                        tn += not filed
                    verdict = "spam" if row.is_spam else "approved"
                    store.change_comment(service.db, created["id"], store.Change(status=verdict), "evaluation",
                                         store.utcnow())
                    if progress:
                        progress(done, total)
        finally:
            service.db.dispose()
    return Replay(spam.Evaluation(tp, fp, fn, tn), held, refused, rules.spam_threshold, rules.hold_threshold,
                  tuple(scores))


def _last(rows: Sequence[spam.LabelledComment], row: spam.LabelledComment) -> datetime | None:
    """For an undated row: the date of the dated row before it in its file."""
    before = None
    for other in rows:
        if other is row:
            return before
        if other.date is not None:
            before = other.date.replace(tzinfo=None)
    return before


def report(result: Replay) -> str:
    """The figures as a small text table."""
    e = result.evaluation
    return "\n".join([
        f"thresholds: spam {result.spam_threshold}, hold {result.hold_threshold}",
        f"precision {e.precision:.3f}  recall {e.recall:.3f}  F1 {e.f1:.4f}  "
        f"false-positive rate {e.fpr * 100:.2f} %",
        "confusion matrix (rows: truth; columns: decision)",
        "               filed as spam   not filed",
        f"  spam         {e.tp:13d}   {e.fn:9d}",
        f"  not spam     {e.fp:13d}   {e.tn:9d}",
        f"held for review by the hold threshold (not filed): {result.held}",
        f"refused as duplicates (409, not judged): {result.refused}",
    ])
