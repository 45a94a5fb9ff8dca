"""Staying power, long form: the crash, contention and outage runs of tests/test_chaos.py and
tests/test_outage.py, for as long as you like, with the figures the README's Reliability section quotes.

    python bench/chaos.py --minutes 10                     # SQLite crashes, contention, outages
    python bench/chaos.py --minutes 10 --postgresql URL    # crashes on PostgreSQL too (a schema of its own)
    python bench/chaos.py --minutes 2 --only crash         # just one kind of run

Each run starts real `comments serve` processes in a temporary folder and stops them at the end;
outages stop and start a throwaway PostgreSQL cluster of their own (never the one at URL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos_support import (  # noqa: E402  (the shared machinery lives with the tests)
    contention_run, crash_run, outage_run, postgres_schema, private_postgres, statuses,
)

KINDS = ("crash", "contention", "outage")


def _crash(url: str, workdir: Path, minutes: float) -> dict[str, Any]:
    report = crash_run(url, workdir, seconds=minutes * 60, min_crashes=5, log=lambda line: print("  " + line))
    print("  " + report.summary())
    return {"acknowledged": report.ledger.acknowledged, "sent": report.ledger.attempted,
            "committed_unacknowledged": report.ledger.stored - report.ledger.acknowledged,
            "crashes": report.crashes, "lost": len(report.ledger.lost), "problems": report.ledger.problems,
            "integrity": report.integrity, "bad_log_lines": len(report.bad_log),
            "answers": dict(report.answers)}


def _contention(workdir: Path, seconds: float) -> dict[str, Any]:
    report = contention_run(f"sqlite:///{workdir / 'busy.db'}", workdir, seconds=seconds, workers=4)
    print("  " + report.summary())
    return {"seconds": round(report.seconds), "acknowledged": report.ledger.acknowledged,
            "bulk_status_changes": report.bulk_updated, "answers": dict(report.answers),
            "locked": report.locked_answers, "problems": report.ledger.problems,
            "integrity": report.integrity, "bad_log_lines": len(report.bad_log)}


def _outages(workdir: Path, minutes: float) -> dict[str, Any]:
    totals: dict[str, Any] = {"outages": 0, "requests": 0, "during": 0, "during_503": 0, "500s": 0,
                              "slowest_seconds": 0.0, "acknowledged": 0, "lost": 0, "recovery_seconds": []}
    deadline = time.monotonic() + minutes * 60
    with private_postgres() as pg:
        while True:
            report = outage_run(pg, workdir / f"outage{totals['outages']}", down_seconds=5, db_timeout=2)
            print("  " + report.summary())
            during = report.during()
            totals["outages"] += 1
            totals["requests"] += len(report.outcomes)
            totals["during"] += len(during)
            totals["during_503"] += statuses(during)["503"]
            totals["500s"] += statuses(report.outcomes)["500"]
            totals["slowest_seconds"] = max(totals["slowest_seconds"],
                                            max(o.end - o.start for o in report.outcomes))
            totals["acknowledged"] += report.ledger.acknowledged
            totals["lost"] += len(report.ledger.lost)
            totals["recovery_seconds"].append(report.recovered_after())
            if time.monotonic() > deadline:
                return totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5, help="length of each crash and outage run")
    parser.add_argument("--contention-seconds", type=float, default=60)
    parser.add_argument("--postgresql", metavar="URL", default=os.environ.get("COMMENTS_TEST_DATABASE_URL"),
                        help="also crash-test on this PostgreSQL database (in a schema of its own)")
    parser.add_argument("--only", choices=KINDS, action="append")
    parser.add_argument("--json", type=Path, help="write the figures here as well")
    args = parser.parse_args(argv)
    kinds = args.only or list(KINDS)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="comments-chaos-") as scratch:
        root = Path(scratch)
        if "crash" in kinds:
            print(f"crash, SQLite, {args.minutes} min")
            figures["crash_sqlite"] = _crash(f"sqlite:///{root / 'crash.db'}", root / "crash-sqlite", args.minutes)
            if args.postgresql:
                print(f"crash, PostgreSQL, {args.minutes} min")
                with postgres_schema(args.postgresql, f"cmt_bench_chaos_{os.getpid()}") as url:
                    figures["crash_postgresql"] = _crash(url, root / "crash-pg", args.minutes)
        if "contention" in kinds:
            print(f"contention, 4 workers on one SQLite file, {args.contention_seconds} s")
            figures["contention"] = _contention(root / "contention", args.contention_seconds)
        if "outage" in kinds:
            print(f"outages, PostgreSQL stopped for 5 s at a time, {args.minutes} min")
            try:
                figures["outage"] = _outages(root / "outage", args.minutes)
            except LookupError as exc:
                print(f"  skipped: {exc}")
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    failed = any(f.get("lost") or f.get("problems") or f.get("500s") or f.get("locked")
                 or f.get("integrity") not in (None, "ok", "n/a") for f in figures.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
