"""Moving in: stream another system's export through the checks and the sanitiser into the store, with a report.

The file is read here; each batch of comments is a task for a worker process (one per core,
up to four): render, make the rows (encryption, keyed hashes), then write them in a
transaction of its own. The writes take turns in file order, so ids follow the file and a
reply finds its parent stored already, and the next batches are rendered meanwhile.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.util
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from multiprocessing.context import BaseContext
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from . import importers, markdown, sanitize, store
from .db import Database
from .importers import ImportedComment, ImportFormatError, Options, Problem
from .store.imports import Prepared, RowMaker, origin_key

#: Comments per batch: per task of a worker process, and per transaction. With ``MAX_WORKERS``
#: this bounds the import's memory (measured by bench/import_bench.py: under 160 MiB in all).
BATCH = 1000
#: Worker processes at most, whatever the number of cores: each holds a batch or two and its own
#: connection, so more would raise the memory bound, and the writes take turns anyway.
MAX_WORKERS = 2
MAX_LISTED_FAILURES = 100
_PARAGRAPH_TAGS = re.compile(r"</?p(?:\s[^>]*)?>", re.IGNORECASE)

Progress = Callable[["Report"], None]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass
class Report:
    """What an import did (or, in a dry run, would do)."""

    origin: str
    dry_run: bool
    read: int = 0
    imported: int = 0
    present: int = 0
    reparented: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[Problem] = field(default_factory=list)
    failed_count: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    fatal: Problem | None = None

    def note(self, problem: Problem) -> None:
        reason = re.sub(r"\d+", "N", problem.reason) if problem.kind != "failed" else problem.reason
        if problem.kind == "skipped":
            self.skipped[reason] += 1
        elif problem.kind == "warning":
            self.warnings[reason] += 1
        else:
            self.failed_count += 1
            if len(self.failed) < MAX_LISTED_FAILURES:
                self.failed.append(problem)

    @property
    def problems(self) -> int:
        return sum(self.skipped.values()) + self.failed_count + (self.fatal is not None)

    def lines(self) -> list[str]:
        unit = importers.POSITION_UNITS.get(self.origin, "item")
        verb = "would import" if self.dry_run else "imported"
        out = [f"{verb} {self.imported}, already present {self.present}, "
               f"re-parented {self.reparented}, skipped {sum(self.skipped.values())}, failed {self.failed_count}"
               f" (of {self.read} comments read)"]
        out += [f"  skipped: {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        out += [f"  warning: {reason}: {n}" for reason, n in sorted(self.warnings.items())]
        out += [f"  failed at {unit} {p.position}: {p.reason}" for p in self.failed]
        if self.failed_count > len(self.failed):
            out.append(f"  ... and {self.failed_count - len(self.failed)} more failures")
        if self.fatal is not None:
            where = f" at {unit} {self.fatal.position}" if self.fatal.position else ""
            out.append(f"stopped{where}: {self.fatal.reason}")
        return out


def prepare(item: ImportedComment) -> Prepared:
    """Render an imported body with the same sanitiser as a new comment (Markdown made HTML first)."""
    text = item.body
    if item.body_format == "markdown":  # Isso's: its inline markup as HTML, its blocks as typed
        text = markdown.to_html(text)
    if item.body_format in ("html", "markdown"):
        text = _PARAGRAPH_TAGS.sub("\n\n", text).strip() or text
    key = origin_key(item.origin, item.source, item.origin_id)
    parent = origin_key(item.origin, item.source, item.parent_origin_id) if item.parent_origin_id else None
    return Prepared(
        key=key, parent_key=parent, page=item.page, status=item.status, created_at=item.created_at,
        author=item.author or "Anonymous", email=item.email, url=item.url, ip=item.ip,
        user_agent=item.user_agent, body=item.body, body_html=sanitize.render(text),
        policy_version=sanitize.POLICY_VERSION,
    )


def _raw_batches(report: Report, items: Iterator[importers.Item]) -> Iterator[list[ImportedComment]]:
    batch: list[ImportedComment] = []
    try:
        for item in items:
            if isinstance(item, Problem):
                report.note(item)
                if item.kind != "warning":
                    report.read += 1
                continue
            report.read += 1
            batch.append(item)
            if len(batch) >= BATCH:
                yield batch
                batch = []
    except ImportFormatError as exc:
        report.fatal = exc.problem  # the last, partial batch read before the break is still written
    if batch:
        yield batch


# ---- the work done in worker processes ---------------------------------------------------


class Turnstile:
    """Lets numbered batches through one at a time, in order, across processes. Once stopped
    after a batch (it failed), the batches after it are turned away; the ones before it still
    go through, as they would have, one after the other, in a single process."""

    _NEVER = 2**62

    def __init__(self, context: BaseContext) -> None:
        self._condition = context.Condition()
        self._next = context.RawValue("q", 0)
        self._stop_after = context.RawValue("q", self._NEVER)

    @contextmanager
    def turn(self, number: int) -> Iterator[bool]:
        """Wait for this batch's turn; yields False when it was turned away meanwhile."""
        with self._condition:
            self._condition.wait_for(lambda: self._next.value == number or number > self._stop_after.value)
            go = number <= self._stop_after.value
        if not go:  # turned away: the turn stays where it is, for the batches before it
            yield False
            return
        try:
            yield True
        except BaseException:
            self.stop(after=number)
            raise
        finally:
            with self._condition:
                self._next.value = number + 1
                self._condition.notify_all()

    def stop(self, after: int = -1) -> None:
        """Turn away the batches after this one (by default, all that have not had their turn)."""
        with self._condition:
            self._stop_after.value = min(self._stop_after.value, after)
            self._condition.notify_all()


class _Job(Protocol[T_co]):
    """What is done with each batch, in a worker process (or here, with one core)."""

    def __call__(self, number: int, batch: list[ImportedComment]) -> T_co: ...

    def start_worker(self) -> None:
        """First thing in each worker process."""

    def stop(self) -> None:
        """The run ends early: batches that have not had their turn are not written."""

    def close(self) -> None:
        """The process has done its last batch (each worker, and this one)."""


@dataclass
class _Writing:
    """An import's job: a batch's rows made, then written in the batch's turn: (imported, present).
    Each process writes through one connection of its own, open until its last batch."""

    db: Database
    maker: RowMaker
    now: datetime
    turnstile: Turnstile
    _writer: store.imports.Writer | None = None
    _closing: ExitStack = field(default_factory=ExitStack)

    def __call__(self, number: int, batch: list[ImportedComment]) -> tuple[int, int]:
        try:
            rows = [self.maker(prepare(item)) for item in batch]
        except BaseException:
            self.turnstile.stop(after=number)  # it never takes its turn: the ones after it must not wait
            raise
        with self.turnstile.turn(number) as go:
            if not go:
                return 0, 0
            if self._writer is None:
                self._writer = self._closing.enter_context(store.imports.writer(self.db, self.now))
            return self._writer.write(rows)

    def start_worker(self) -> None:
        # The pool's connections came by fork and are the parent's: leave them, open new ones.
        self.db.engine.dispose(close=False)
        # A pool's worker process ends through multiprocessing, which runs its finalizers.
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def stop(self) -> None:
        self.turnstile.stop()

    def close(self) -> None:
        self._writer = None
        self._closing.close()


class _Checking:
    """A dry run's job: the batch rendered, and its origin keys."""

    def __call__(self, number: int, batch: list[ImportedComment]) -> list[str]:
        return [prepare(item).key for item in batch]

    def start_worker(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


# A record travels to a worker as a plain tuple of its fields (a dataclass pickles ten times
# slower). The job travels by fork, never pickled: it may hold the email keys.
_FIELDS = attrgetter(*(f.name for f in fields(ImportedComment)))
_worker_job: _Job[Any] | None = None  # in a worker process, set by _start_worker


def _start_worker(job: _Job[Any]) -> None:
    global _worker_job
    job.start_worker()
    _worker_job = job


def _run_in_worker(number: int, batch: list[tuple[Any, ...]]) -> Any:
    assert _worker_job is not None, "not in a worker started by _start_worker"
    return _worker_job(number, [ImportedComment(*values) for values in batch])


def _each_batch(report: Report, items: Iterator[importers.Item], job: _Job[T], workers: int) -> Iterator[T]:
    """job(number, batch) for each batch of the file, in worker processes (here with fewer than
    two), the results in file order. At most one batch per worker, and one more, is in flight:
    memory stays bounded however long the file."""
    batches = enumerate(_raw_batches(report, items))
    try:
        if workers < 2:
            for number, batch in batches:
                yield job(number, batch)
            return
        context = multiprocessing.get_context("fork")
        gc.freeze()  # the collector would otherwise write to, and so copy, every page the workers share
        try:
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job,)) as pool:
                pending: deque[Future[T]] = deque()
                for number, batch in batches:
                    pending.append(pool.submit(_run_in_worker, number, [_FIELDS(item) for item in batch]))
                    if len(pending) > workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        finally:
            gc.unfreeze()
    except BaseException:
        job.stop()
        raise
    finally:
        job.close()


def run(
    db: Database, origin: str, path: str | os.PathLike[str], options: Options | None = None, *,
    dry_run: bool = False, strict: bool = False, actor: str = "cli", progress: Progress | None = None,
) -> Report:
    """Import one file. A dry run writes nothing. With strict, a first pass checks the whole file
    and any problem stops the run before anything is written. Otherwise bad comments are skipped
    with their reasons, and a file that breaks off keeps what came before it (a rerun adds the rest)."""
    if strict and not dry_run:
        check = run(db, origin, path, options, dry_run=True, progress=progress)
        if check.problems:
            check.fatal = check.fatal or Problem(None, "strict: the file has problems; nothing was written")
            return check
    report = Report(origin, dry_run)
    waiting_before = 0 if dry_run else store.imports.orphans(db)
    parsed = importers.parse(origin, path, options)
    try:
        if dry_run:
            _check(db, report, parsed, progress)
        else:
            _write(db, report, parsed, progress)
    except ImportFormatError as exc:
        report.fatal = exc.problem
    if not dry_run and (report.imported or report.present):
        summary = f"{origin}: {report.imported} imported, {report.present} already present"
        report.reparented = store.imports.finish(db, actor, summary, store.utcnow(), waiting_before)
    return report


def _workers(db: Database | None = None) -> int:
    """Worker processes: one per core, up to ``MAX_WORKERS``; none for a database only this process sees."""
    if db is not None and db.is_sqlite and db.engine.url.database in (None, "", ":memory:"):
        return 1
    return min(os.cpu_count() or 1, MAX_WORKERS)


def _write(db: Database, report: Report, parsed: Iterator[importers.Item], progress: Progress | None) -> None:
    now = store.utcnow()
    job = _Writing(db, store.imports.row_maker(db, now), now, Turnstile(multiprocessing.get_context("fork")))
    for imported, present in _each_batch(report, parsed, job, _workers(db)):
        report.imported += imported
        report.present += present
        if progress:
            progress(report)


def _check(db: Database, report: Report, parsed: Iterator[importers.Item], progress: Progress | None) -> None:
    for keys in _each_batch(report, parsed, _Checking(), _workers()):
        found = store.imports.present(db, keys)
        report.present += len({key for key in keys if key in found})
        report.imported += len(set(keys) - found)
        if progress:
            progress(report)
