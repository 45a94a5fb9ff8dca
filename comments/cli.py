"""The `comments` command: serve, db upgrade, token create|list|revoke."""

from __future__ import annotations

import argparse
import logging.config
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .settings import Settings, describe_error

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")


def logging_config(level: str) -> dict[str, Any]:
    """Log lines carry no query strings, bodies or addresses: see http.ErrorMiddleware."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn.access": {"level": "WARNING"},
            "uvicorn.error": {"level": level},
            "alembic": {"level": "WARNING"},
            # The pool reports a connection that died while the database was away with a
            # traceback; the request itself got a clean 503 and the log line saying so.
            "sqlalchemy.pool": {"level": "CRITICAL"},
        },
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comments", description="Self-hosted comment moderation service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="bring the schema up to date, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    worker = commands.add_parser("worker", help="deliver notification mail and webhooks from the outbox")
    worker.add_argument("--once", action="store_true", help="deliver what is due now, then stop")

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply the alembic migrations")

    keys = commands.add_parser("keys", help="email encryption keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("new", help="print a new random key (for COMMENTS_EMAIL_KEY)")
    keys.add_parser("rotate", help="re-encrypt every address under a new key (resumable)")
    commands.add_parser("purge", help="run the periodic upkeep now: retention and anonymisation")

    imports = commands.add_parser("import", help="import comments from another system, or restore a backup")
    sources = imports.add_subparsers(dest="import_command", required=True)
    for origin, what in (("wordpress", "a WordPress export (WXR) file"), ("disqus", "a Disqus export file"),
                         ("isso", "an Isso SQLite database")):
        source = sources.add_parser(origin, help=f"import {what}")
        source.add_argument("file")
        source.add_argument("--dry-run", action="store_true", help="check everything and report; write nothing")
        source.add_argument("--strict", action="store_true",
                            help="stop before writing anything if any comment would be skipped or fail")
        source.add_argument("--allow-long-bodies", action="store_true",
                            help="import bodies longer than COMMENTS_MAX_BODY_CHARS")
        source.add_argument("--allow-invalid-emails", action="store_true",
                            help="keep invalid email addresses as given instead of failing those comments")
        if origin == "wordpress":
            source.add_argument("--page-from", choices=["link", "guid"], default="link")
            source.add_argument("--include-pings", action="store_true", help="import pingbacks and trackbacks")
        if origin == "disqus":
            source.add_argument("--page-from", choices=["link", "identifier"], default="link")
    restore = sources.add_parser("backup", help="restore a backup made by `comments export` into an empty database")
    restore.add_argument("file")
    export = commands.add_parser("export", help="write a complete backup (JSON Lines), or a WordPress file")
    export.add_argument("file")
    export.add_argument("--format", choices=["jsonl", "wxr"], default="jsonl")
    export.add_argument("--site", default="https://example.com",
                        help="with --format wxr: the site address the page keys are paths of")

    spam = commands.add_parser("spam", help="the spam filter").add_subparsers(dest="spam_command", required=True)
    train = spam.add_parser("train", help="learn labelled CSV files (COMMENT_ID,AUTHOR,DATE,CONTENT,CLASS)")
    train.add_argument("files", nargs="+", metavar="FILE")
    evaluate = spam.add_parser("evaluate", help="replay a corpus through the real pipeline and print figures")
    evaluate.add_argument("--train", nargs="+", required=True, metavar="FILE")
    evaluate.add_argument("--test", nargs="+", required=True, metavar="FILE")

    token = commands.add_parser("token", help="moderator tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="make a token and print it once")
    create.add_argument("name")
    token.add_parser("list", help="list token names")
    revoke = token.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"comments: configuration error: {describe_error(exc)}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(settings.log_level))
    from sqlalchemy.exc import OperationalError

    from .crypto import KeyProblem

    try:
        return _run(args, settings)
    except KeyProblem as exc:
        print(f"comments: email key: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"comments: the database does not answer ({type(exc.orig).__name__}); "
              "check COMMENTS_DATABASE_URL", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from . import db, store

    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "worker":
        return _worker(args, settings)
    if args.command == "db":
        db.upgrade(settings)
        print("database is up to date")
        return 0
    if args.command == "spam":
        return _spam(args, settings)
    if args.command in ("import", "export"):
        return _move(args, settings)
    if args.command == "keys" and args.keys_command == "new":
        from .crypto import new_key

        print(new_key())
        return 0
    database = db.Database(settings)
    try:
        if args.command == "keys":
            return _rotate(database)
        if args.command == "purge":
            done = store.run_upkeep(database, store.utcnow())
            print(f"anonymised {done.anonymised} comments, deleted {done.purged} old spam and trash comments")
            return 0
        if args.token_command == "create":
            if not TOKEN_NAME.fullmatch(args.name):
                print("comments: a token name is 1-100 letters, digits, _ . @ -", file=sys.stderr)
                return 2
            try:
                token = store.create_token(database, args.name, store.utcnow())
            except store.TokenExists:
                print(f"comments: a token named {args.name!r} exists; revoke it first", file=sys.stderr)
                return 1
            print(token)
            return 0
        if args.token_command == "list":
            for row in store.list_tokens(database):
                used = store.rfc3339(row["last_used_at"]) if row["last_used_at"] else "never"
                print(f"{row['name']}\tcreated {store.rfc3339(row['created_at'])}\tlast used {used}")
            return 0
        if not store.revoke_token(database, args.name, store.utcnow()):
            print(f"comments: no token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0
    finally:
        database.dispose()


def progress(label: str) -> Any:
    """A one-line progress display on stderr: `label done/total`."""
    import time

    shown = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - shown[0] < 0.2:
            return
        shown[0] = now
        percent = 100 * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{label} {done}/{total} ({percent} %)", end=end, file=sys.stderr, flush=True)

    return show


def _move(args: argparse.Namespace, settings: Settings) -> int:
    """comments import ... and comments export ..."""
    from . import backup, db, importing
    from .importers import Options

    db.upgrade(settings)  # imports and restores go into a database at the current schema
    database = db.Database(settings)
    try:
        if args.command == "export":
            # Readable by its owner only: a WXR file holds addresses in clear, a backup everything else.
            fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as out:
                if args.format == "wxr":
                    total = backup.export_wxr(database, out, args.site, lambda _t, n: print(
                        f"\rexported {n} comments", end="", file=sys.stderr, flush=True))
                    print(f"\nwrote {total} comments to {args.file} (WordPress WXR; it holds email "
                          "addresses in clear)", file=sys.stderr)
                else:
                    counts = backup.export_backup(database, out)
                    print(f"wrote {args.file}: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
            return 0
        if args.import_command == "backup":
            try:
                with open(args.file, "rb") as source:
                    counts = backup.restore_backup(database, source)
            except backup.BackupError as exc:
                print(f"comments: {args.file}: {exc}", file=sys.stderr)
                return 1
            print("restored " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
            return 0
        options = Options(
            page_from=getattr(args, "page_from", "link"), include_pings=getattr(args, "include_pings", False),
            max_body_chars=settings.max_body_chars, allow_long_bodies=args.allow_long_bodies,
            allow_invalid_emails=args.allow_invalid_emails,
        )

        def show(report: importing.Report) -> None:
            print(f"\rread {report.read}: imported {report.imported}, already present {report.present}, "
                  f"skipped {sum(report.skipped.values())}, failed {report.failed_count}",
                  end="", file=sys.stderr, flush=True)

        report = importing.run(database, args.import_command, args.file, options, dry_run=args.dry_run,
                               strict=args.strict, progress=show)
        print(file=sys.stderr)
        print("\n".join(report.lines()))
        return 1 if report.fatal else 0
    except OSError as exc:
        print(f"comments: cannot open {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        database.dispose()


def _spam(args: argparse.Namespace, settings: Settings) -> int:
    from . import db, evaluation
    from .spam import CorpusError

    try:
        if args.spam_command == "train":
            database = db.Database(settings)
            try:
                learned = evaluation.train_files(database, args.files, progress("learned"))
            finally:
                database.dispose()
            print(f"learned {learned} labelled comments")
            return 0
        result = evaluation.replay(args.train, args.test, progress("replayed"))
    except CorpusError as exc:
        print(f"comments: {exc} (nothing was learned)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"comments: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print(evaluation.report(result))
    return 0


def _rotate(database: Any) -> int:
    """Put a new key first (key file mode) unless a rotation is unfinished, then re-encrypt in
    batches; rows written meanwhile by workers still on the old key are picked up by a last pass."""
    import time

    from . import store
    from .crypto import KeySource

    database.keyring()
    if store.remaining(database) == 0:
        source = KeySource(database.settings.email_key, database.settings.key_file)
        kid = source.add_key()
        print(f"added key {kid} first in {source.path}; waiting {int(KeySource.RECHECK_SECONDS) + 1} s "
              "for running workers to read it before re-encrypting", flush=True)
        # Until every worker knows the new key, rows moved to it would escape their lookups.
        time.sleep(KeySource.RECHECK_SECONDS + 1)
    ring = database.refresh_keyring()
    total = store.remaining(database)
    done = 0
    quiet_passes = 0
    while quiet_passes < 2:
        moved = store.rotate_batch(database)
        done += moved
        print(f"\rre-encrypted {done}/{max(total, done)} addresses under key {ring.current_id}",
              end="", file=sys.stderr, flush=True)
        if moved == 0:
            quiet_passes += 1
            if quiet_passes < 2:
                time.sleep(KeySource.RECHECK_SECONDS + 1)
    print(file=sys.stderr)
    print(f"done: every address is under key {ring.current_id}; older keys can be removed "
          "once no worker still runs with them")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from . import db, server, store

    db.upgrade(settings)
    database = db.Database(settings)
    try:
        store.load_keys(database)  # make the secret once, before the workers start
    finally:
        database.dispose()
    server.run(args.host, args.port, args.workers, settings.client_timeout_seconds,
               logging_config(settings.log_level))
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver from the outbox until SIGTERM or Ctrl-C (or, with --once, what is due now)."""
    import asyncio
    import signal

    from .notify.worker import Worker, worker_loop
    from .service import Service

    service = Service(settings)
    try:
        if args.once:
            print(f"tried {Worker(service).drain()} deliveries")
            return 0

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await worker_loop(service, stop)

        asyncio.run(run())
        return 0
    finally:
        service.db.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
