"""The `tickler` console script.

    tickler run                 the bot and its scheduler (same as `python -m bot`)
    tickler engine              the scheduler alone, without the Telegram console
    tickler next "EXPR" [--tz ZONE] [--after ISO8601] [--count N]
    tickler backup FILE         an online, consistent copy of the SQLite database
    tickler export DIR          the database as JSONL files (DIR empty or absent)
    tickler validate-export DIR check an export: "ok" or one line per problem
    tickler import DIR [--merge] restore an export into the database
    tickler migrate-store --from A --to B   move every row between SQLite and PostgreSQL
    tickler demo                the bot against local fakes, no credentials (./demo)
    tickler doctor              check settings, database, bot token and agent; exit 1 on a problem

Each subcommand is a `_register_<name>(subparsers)` function that adds its parser
and sets `handler`; `main` reads the clock once and dispatches. Errors the operator
can fix exit with status 2 and exactly one sentence on stderr, nothing on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from bot.boot import install_core_sources
from scheduler.cron import CronExpression, load_zone
from scheduler.errors import TicklerError
from scheduler.timeutil import format_utc, parse_utc

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
MAX_COUNT = 1000

Handler = Callable[[argparse.Namespace, datetime], int]


class UsageError(Exception):
    """A command line the operator has to fix; `str()` is the one sentence to show."""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message on error; we want one sentence, status 2."""

    def error(self, message: str) -> NoReturn:
        for prefix, lead in _ARGPARSE_MESSAGES:
            if message.startswith(prefix):
                message = lead + message[len(prefix) :]
                break
        message = message.rstrip(".")
        raise UsageError(f"{message[:1].upper()}{message[1:]} (see '{self.prog} --help').")


# argparse's wording, rephrased so the one line reads as a sentence.
_ARGPARSE_MESSAGES = (
    ("the following arguments are required: ", "missing "),
    ("unrecognized arguments: ", "unknown argument "),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tickler", description="Tickler: schedules for an AI agent.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_run(subparsers)
    _register_next(subparsers)
    _register_backup(subparsers)
    _register_export(subparsers)
    _register_validate_export(subparsers)
    _register_import(subparsers)
    _register_migrate_store(subparsers)
    _register_demo(subparsers)
    _register_doctor(subparsers)
    return parser


def _register_doctor(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the settings, the database, the bot token and the agent",
        description="Check that the settings are complete, the database is writable and "
        "migrated, Telegram accepts the token (getMe) and the agent answers. Prints one "
        "line per check with a fix for each failure; exit status 1 when any fails.",
    )
    parser.set_defaults(handler=_run_doctor)


def _run_doctor(args: argparse.Namespace, now: datetime) -> int:
    from bot.doctor import run_doctor

    return run_doctor()


def _register_demo(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the real bot against local fakes and print a short chat (no credentials)",
        description="Start the test Bot API server and agent stub on 127.0.0.1, run the bot "
        "against them on a temporary database, play a short conversation and print it.",
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace, now: datetime) -> int:
    from bot import demo

    return demo.main()


def _register_backup(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "backup",
        help="write a consistent copy of the database while Tickler keeps running",
        description="Copy DATABASE_PATH to FILE with SQLite's online backup: safe while the "
        "bot runs, and the copy opens as a normal Tickler database. A PostgreSQL database "
        "(DATABASE_URL) is backed up with pg_dump instead.",
    )
    parser.add_argument("file", metavar="FILE", help="where to write the copy (must not exist)")
    parser.set_defaults(handler=_run_backup)


def _run_backup(args: argparse.Namespace, now: datetime) -> int:
    import asyncio

    from storage.backup import backup_database

    settings = _settings()
    if settings.database_url is not None:
        raise UsageError(
            "The database is PostgreSQL (DATABASE_URL): back it up with pg_dump (e.g. pg_dump "
            "--format=custom --file=tickler.dump DATABASE_URL), or write 'tickler export DIR'."
        )
    target = Path(args.file)
    if target.exists():
        raise UsageError(f"{target} exists already; choose a new file name.")
    source = settings.database_path
    if not source.exists():
        raise UsageError(f"There is no database at {source} to back up.")
    target.parent.mkdir(parents=True, exist_ok=True)
    pages = asyncio.run(backup_database(source, target))
    print(f"Backed up {source} to {target} ({pages} pages).")
    return EXIT_OK


def _settings() -> Settings:
    from bot.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _register_export(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the database as JSONL files, one per entity, with a manifest",
        description="Export the database (DATABASE_URL, or else DATABASE_PATH) into DIR as "
        "JSONL files (schedules, runs, run_attempts, proposals, chats, work_items, "
        "work_item_history, notifications) plus manifest.json.",
    )
    parser.add_argument("dir", metavar="DIR", help="where to write (must be empty or absent)")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace, now: datetime) -> int:
    import asyncio

    from bot.redact import secrets_of
    from storage.database import DatabaseUnavailable
    from storage.export import export_database
    from storage.locations import shown

    target = Path(args.dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} is not an empty folder; choose a new one.")
    settings = _settings()
    database = settings.database
    if settings.database_url is None and not settings.database_path.exists():
        raise UsageError(f"There is no database at {settings.database_path} to export.")
    try:
        counts = asyncio.run(export_database(database, target, secrets=secrets_of(settings)))
    except (ValueError, DatabaseUnavailable) as exc:
        raise UsageError(str(exc)) from None
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    print(f"Exported {shown(database)} to {target} ({summary}).")
    return EXIT_OK


def _register_validate_export(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "validate-export",
        help="check an export: unique ids, resolvable references, UTC times, counts",
        description="Check an export folder written by 'tickler export': every id unique, "
        "every reference resolvable, every time UTC ISO-8601, the manifest's counts right. "
        "Prints 'ok', or one line per problem and exits with status 1.",
    )
    parser.add_argument("dir", metavar="DIR", help="the export folder")
    parser.set_defaults(handler=_run_validate_export)


def _run_validate_export(args: argparse.Namespace, now: datetime) -> int:
    from storage.export import validate_export

    target = Path(args.dir)
    if not target.is_dir():
        raise UsageError(f"There is no export folder at {target}.")
    problems = validate_export(target)
    if problems:
        sys.stdout.write("".join(f"{line}\n" for line in problems))
        return EXIT_PROBLEMS
    print("ok")
    return EXIT_OK


def _register_import(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "import",
        help="restore an export into the database (which must be empty unless --merge)",
        description="Restore an export folder (checked as validate-export does) into the "
        "database (DATABASE_URL, or else DATABASE_PATH), which must be empty or absent; with "
        "--merge, add the rows whose id is new to a database in use. Stop Tickler first.",
    )
    parser.add_argument("dir", metavar="DIR", help="the export folder")
    parser.add_argument(
        "--merge", action="store_true", help="add rows whose id is new to a non-empty database"
    )
    parser.set_defaults(handler=_run_import)


def _run_import(args: argparse.Namespace, now: datetime) -> int:
    import asyncio

    from storage.database import DatabaseUnavailable
    from storage.export import import_export
    from storage.locations import shown

    source = Path(args.dir)
    if not source.is_dir():
        raise UsageError(f"There is no export folder at {source}.")
    settings = _settings()
    database = settings.database
    if settings.database_url is None:
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        counts = asyncio.run(import_export(source, database, merge=args.merge))
    except (ValueError, DatabaseUnavailable) as exc:
        raise UsageError(str(exc)) from None
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    print(f"Imported {source} into {shown(database)} ({summary}).")
    return EXIT_OK


def _register_migrate_store(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "migrate-store",
        help="move every row from one database to another (SQLite <-> PostgreSQL)",
        description="Move a stopped installation: stop every Tickler first, then copy "
        "every row of --from into the empty --to (SQLite to PostgreSQL or back), check "
        "that each entity's count matches and that both databases export the same bytes, "
        "and print a summary; then start Tickler on --to. Refuses a target that holds rows "
        "and a source an engine wrote a heartbeat to within the last minute.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FROM",
        help="the database in use: a SQLite file (path, sqlite:///relative/path or "
        "sqlite:////absolute/path) or a postgresql:// URL",
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="TO",
        help="the new, empty database, spelled as --from",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="copy even though an engine's heartbeat is recent (only when it is gone)",
    )
    parser.set_defaults(handler=_run_migrate_store)


def _run_migrate_store(args: argparse.Namespace, now: datetime) -> int:
    import asyncio

    from storage.database import DatabaseUnavailable, SchemaTooNew
    from storage.locations import is_postgres
    from storage.migrate_store import (
        MigrationFailed,
        MigrationRefused,
        migrate_store,
        parse_location,
    )

    try:
        source, target = parse_location(args.source), parse_location(args.target)
        moved = asyncio.run(migrate_store(source, target, now=now, force=args.force))
    except (MigrationRefused, DatabaseUnavailable, SchemaTooNew) as exc:
        raise UsageError(str(exc)) from None
    except MigrationFailed as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEMS
    print(moved.summary())
    if is_postgres(target):
        print(f"Now start Tickler with DATABASE_URL={moved.target} (with its password).")
    else:
        print(f"Now start Tickler with DATABASE_PATH={moved.target} and DATABASE_URL unset.")
    return EXIT_OK


def _register_run(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the bot and its scheduler until SIGTERM (same as python -m bot)",
        description="Run the Telegram bot and its scheduler in the foreground until SIGTERM "
        "or Ctrl-C, configured by the environment and .env (see 'tickler doctor'). Applies "
        "SCHEDULES_FILE, starts the engine and the HTTP port, then connects to Telegram, "
        "retrying while it cannot be reached; logs one 'started' line.",
    )
    run.set_defaults(handler=lambda args, now: _serve(headless=False))
    engine = subparsers.add_parser(
        "engine",
        help="run only the scheduler, without the Telegram console, until SIGTERM",
        description="Run the scheduler alone (no Telegram, no HTTP port) until SIGTERM or "
        "Ctrl-C: applies SCHEDULES_FILE, then fires schedules and POSTs to the agent. "
        "No chat is told anything, and reminder runs fail (they need the bot).",
    )
    engine.set_defaults(handler=lambda args, now: _serve(headless=True))


def _serve(*, headless: bool) -> NoReturn:
    # Imported here: `tickler next` stays fast and needs no configuration.
    from bot.__main__ import end_process, serve

    end_process(serve(headless=headless))


def _register_next(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "next",
        help="print the next fire instants of a cron expression",
        description="Print the next fire instants of a cron expression, one ISO-8601 UTC "
        "instant per line, using cronie's daylight-saving rules.",
    )
    parser.add_argument(
        "expr", metavar="EXPR", help='five-field cron expression, e.g. "0 9 * * 1-5"'
    )
    parser.add_argument("--tz", default="UTC", help="IANA time zone (default: UTC)")
    parser.add_argument(
        "--after",
        help="ISO-8601 instant with Z or an offset to start from (default: now)",
    )
    parser.add_argument(
        "--count", default="5", help=f"how many fire instants to print, 1-{MAX_COUNT} (default: 5)"
    )
    parser.set_defaults(handler=_run_next)


def _run_next(args: argparse.Namespace, now: datetime) -> int:
    cron = CronExpression.parse(args.expr)
    zone = load_zone(args.tz)
    after = now if args.after is None else parse_utc(args.after)
    count = _count(args.count)
    fires = [format_utc(fire) for fire in islice(cron.iter_after(after, zone), count)]
    sys.stdout.write("".join(f"{line}\n" for line in fires))
    return EXIT_OK


def _count(text: str) -> int:
    cleaned = text.strip()
    if not cleaned.isascii() or not cleaned.isdigit() or not 1 <= int(cleaned) <= MAX_COUNT:
        raise UsageError(f"--count must be a whole number from 1 to {MAX_COUNT}, not '{text}'.")
    return int(cleaned)


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    install_core_sources()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            raise UsageError(
                "Missing command: use 'tickler next EXPR --tz ZONE', or 'tickler --help'."
            )
        return handler(args, datetime.now(UTC))
    except (UsageError, TicklerError) as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as stop:
        # --help and --version end through SystemExit; report their status instead.
        return stop.code if isinstance(stop.code, int) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
