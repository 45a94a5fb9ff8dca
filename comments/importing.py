"""Moving in: stream another system's export through the checks and the sanitiser into the store, with a report."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import importers, sanitize, store
from .db import Database
from .importers import ImportedComment, ImportFormatError, Options, Problem
from .store.imports import Prepared, origin_key

BATCH = 1000
MAX_LISTED_FAILURES = 100
_PARAGRAPH_TAGS = re.compile(r"</?p(?:\s[^>]*)?>", re.IGNORECASE)

Progress = Callable[["Report"], None]


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
    """Render an imported body with the same sanitiser as a new comment."""
    text = item.body
    if item.body_format == "html":
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


def _prepare_all(batch: list[ImportedComment]) -> list[Prepared]:
    return [prepare(item) for item in batch]


def _batches(report: Report, items: Iterator[importers.Item]) -> Iterator[list[Prepared]]:
    """Batches rendered by the sanitiser in other processes (one per core), the next one while the
    current one is written; at most two batches are in memory at once."""
    raw = _raw_batches(report, items)
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2:
        for batch in raw:
            yield _prepare_all(batch)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: list[Future[list[Prepared]]] = []
        for batch in raw:
            size = max(1, -(-len(batch) // workers))
            submitted = [pool.submit(_prepare_all, batch[i:i + size]) for i in range(0, len(batch), size)]
            if pending:
                yield [p for future in pending for p in future.result()]
            pending = submitted
        if pending:
            yield [p for future in pending for p in future.result()]


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
    pages: dict[str, int] = {}
    now = store.utcnow()
    try:
        for batch in _batches(report, importers.parse(origin, path, options)):
            if dry_run:
                found = store.imports.present(db, [p.key for p in batch])
                report.present += len({p.key for p in batch if p.key in found})
                report.imported += len({p.key for p in batch} - found)
            else:
                imported, present = store.imports.write_batch(db, batch, pages, now)
                report.imported += imported
                report.present += present
            if progress:
                progress(report)
    except ImportFormatError as exc:
        report.fatal = exc.problem
    if not dry_run and (report.imported or report.present):
        summary = f"{origin}: {report.imported} imported, {report.present} already present"
        report.reparented = store.imports.finish(db, actor, summary, store.utcnow(), waiting_before)
    return report
