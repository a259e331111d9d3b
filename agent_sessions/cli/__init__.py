"""``agent-sessions``: the command line. It parses arguments and calls the public API.

Every failure the operator can fix (a missing file, a bad URL, an unreachable server, an unknown
session, a damaged export) is one line on stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from .._version import __version__
from ..errors import AgentSessionsError
from ..schema import DEFAULT_MESSAGES_TABLE, DEFAULT_SESSIONS_TABLE, validate_identifier
from .memory import add_parser as add_memory_parser
from .prune import add_parser as add_prune_parser

__all__ = ["main"]

_DB_HELP = "a SQLite file path, or a database URL such as postgresql://user@host/db"
_OFFLINE_HELP = "use the local offline model even when OPENAI_API_KEY is set"
_TRACEBACK = "AGENT_SESSIONS_TRACEBACK"
"""Set (to anything) to see the traceback of an unexpected error instead of its one line."""
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MAX_INT = 2**63 - 1
_MAX_DAYS = 36525  # 100 years, as for ages


def _identifier(value: str) -> str:
    try:
        return validate_identifier(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _age(value: str) -> timedelta:
    from ..admin.purge import parse_age  # noqa: PLC0415 - keeps `--version` and `demo` light

    try:
        return parse_age(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _metadata_filter(value: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``ls --where``: VALUE as JSON when it parses (not NaN), else text."""
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"invalid filter {value!r}: use KEY=VALUE, such as plan=pro"
        )

    def refuse(constant: str) -> object:
        raise ValueError(constant)

    try:
        parsed: object = json.loads(raw, parse_constant=refuse)
    except ValueError:
        parsed = raw
    return key, parsed


def _size(value: str) -> int:
    match = _SIZE.fullmatch(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid size {value!r}: use bytes or a unit, such as 500k, 20M or 1G"
        )
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size > _MAX_INT:
        raise argparse.ArgumentTypeError(f"invalid size {value!r}: at most 8 EiB")
    return size


def _whole(value: str, least: int = 0, most: int = _MAX_INT) -> int:
    """A whole number in ``[least, most]``: every database takes it as a 64-bit integer."""
    if not value.isascii() or not value.isdigit() or not least <= int(value) <= most:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from {least} to {most:,}, got {value!r}"
        )
    return int(value)


def _count(value: str) -> int:
    return _whole(value, least=1)


def _days(value: str) -> int:
    return _whole(value, least=1, most=_MAX_DAYS)


def _tables_options() -> argparse.ArgumentParser:
    tables = argparse.ArgumentParser(add_help=False)
    tables.add_argument(
        "--sessions-table",
        type=_identifier,
        default=DEFAULT_SESSIONS_TABLE,
        metavar="NAME",
        help=f"table of session records (default: {DEFAULT_SESSIONS_TABLE})",
    )
    tables.add_argument(
        "--messages-table",
        type=_identifier,
        default=DEFAULT_MESSAGES_TABLE,
        metavar="NAME",
        help=f"table of items (default: {DEFAULT_MESSAGES_TABLE})",
    )
    return tables


def _quiet_option() -> argparse.ArgumentParser:
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return quiet


def _add_read_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tables = _tables_options()
    ls = commands.add_parser(
        "ls",
        parents=[tables],
        help="list sessions with their item count, size and activity",
        description="List the sessions of a database: items, size, first and last activity. "
        "Newest activity first by default.",
    )
    ls.add_argument("db", help=_DB_HELP)
    ls.add_argument(
        "--sort",
        choices=["activity", "created", "id", "items", "size"],
        default="activity",
        help="order by last activity (default), first activity, id, item count or size",
    )
    ls.add_argument("--reverse", action="store_true", help="reverse the order")
    ls.add_argument("--older-than", type=_age, metavar="AGE", help="inactive for longer (30d)")
    ls.add_argument("--newer-than", type=_age, metavar="AGE", help="active within (12h)")
    ls.add_argument("--prefix", help="only session ids that start with this text")
    ls.add_argument("--min-items", type=_whole, default=0, metavar="N", help="at least N items")
    ls.add_argument("--min-size", type=_size, default=0, metavar="SIZE", help="at least (20M)")
    ls.add_argument("--limit", type=_count, default=100, help="list at most N (default 100)")
    ls.add_argument("--offset", type=_whole, default=0, help="skip the first N (paging)")
    ls.add_argument(
        "--where",
        type=_metadata_filter,
        action="append",
        metavar="KEY=VALUE",
        help="only sessions whose metadata has KEY equal to VALUE (JSON if it parses, else "
        "text); repeatable, all must hold",
    )
    ls.add_argument(
        "--agent",
        metavar="NAME",
        help="only sessions with at least one item agent NAME wrote (provenance)",
    )
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = commands.add_parser(
        "show",
        parents=[tables],
        help="print a conversation: roles, tool calls, outputs",
        description="Print a session's items, oldest first. Rows that cannot be decoded are "
        "shown as such; an EncryptedSession's items are counted by key id, or decrypted with "
        "--key-env. For advanced sessions (AdvancedSQLiteSession, "
        "AdvancedSQLAlchemySession; on SQLite, PostgreSQL or MariaDB), each item's branch, "
        "then the branches (parent, items, user turns, created, the current one starred) and "
        "the token usage per branch and turn.",
    )
    show.add_argument("db", help=_DB_HELP)
    show.add_argument("session_id", help="the session to print")
    show.add_argument("--limit", type=_count, metavar="N", help="only the newest N items")
    show.add_argument("--full", action="store_true", help="do not shorten long texts")
    show.add_argument("--json", action="store_true", help="print JSON (decoded items)")
    show.add_argument(
        "--key-env",
        action="append",
        metavar="VAR",
        help="decrypt an EncryptedSession's items with the master key in environment variable "
        "VAR (never on the command line); repeat for older keys after a rotation, newest first",
    )
    show.add_argument(
        "--key-store",
        metavar="PATH",
        help="the SQLiteKeyStore file of a session encrypted with key_store= (read only; "
        "its data key is unwrapped with the --key-env key)",
    )

    search = commands.add_parser(
        "search",
        parents=[tables],
        help="find items containing a text, across all sessions",
        description="Find stored items containing a text (case-insensitive for ASCII). "
        "Encrypted items cannot be searched.",
    )
    search.add_argument("db", help=_DB_HELP)
    search.add_argument("text", help="the text to look for")
    search.add_argument("--limit", type=_count, default=50, help="at most N items (50)")
    search.add_argument("--json", action="store_true", help="print JSON")

    stats = commands.add_parser(
        "stats",
        parents=[tables],
        help="store size, sessions, items, largest sessions, growth",
        description="Print what an operator watches: size on disk, sessions, items, the "
        "largest sessions and how many items each recent day added.",
    )
    stats.add_argument("db", help=_DB_HELP)
    stats.add_argument("--top", type=_count, default=10, help="largest sessions to list (10)")
    stats.add_argument("--days", type=_days, default=14, help="days of growth to show (14)")
    stats.add_argument("--json", action="store_true", help="print JSON")


def _add_write_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tables, quiet = _tables_options(), _quiet_option()
    export = commands.add_parser(
        "export",
        parents=[tables, quiet],
        help="write sessions to a JSON Lines file",
        description="Export sessions (all, or those named) to JSON Lines, with a checksum per "
        "session. Advanced sessions' branch trees (branches, each item's branch, usage, the "
        "current branch) come along (format version 2). Exporting, importing into an empty "
        "database and exporting again gives identical bytes. A new FILE is readable by its "
        "owner only; an existing one is replaced only with --force.",
    )
    export.add_argument("db", help=_DB_HELP)
    export.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="default: all")
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the file (default: stdout); never a SQLite file, never the database itself",
    )
    export.add_argument(
        "--force", action="store_true", help="replace FILE if it exists (keeping its mode)"
    )

    imp = commands.add_parser(
        "import",
        parents=[tables, quiet],
        help="read a JSON Lines export into a database",
        description="Import an export file; the tables (and the branch tables a version 2 "
        "file's trees need) are created if missing. The whole file is checked before anything "
        "is written, and each session, items and tree, is one transaction.",
    )
    imp.add_argument("db", help=_DB_HELP + " (created if missing)")
    imp.add_argument("file", type=Path, help="the export file")
    existing = imp.add_mutually_exclusive_group()
    existing.add_argument("--replace", action="store_true", help="overwrite existing sessions")
    existing.add_argument("--skip-existing", action="store_true", help="keep existing sessions")

    mig = commands.add_parser(
        "migrate",
        parents=[tables, quiet],
        help="copy every session to another database, verified and resumable",
        description="Copy sessions from SRC to DST (SQLite, PostgreSQL, MariaDB), one "
        "transaction per session, each verified by count and SHA-256, advanced sessions with "
        "their branch trees. Run it again after an interruption: identical sessions are "
        "skipped. Exits 1 if sessions differ at DST.",
    )
    mig.add_argument("src", help=_DB_HELP)
    mig.add_argument("dst", help="the destination, created if missing")
    mig.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="default: all")
    mig.add_argument("--replace", action="store_true", help="overwrite sessions that differ")
    mig.add_argument("--batch-size", type=_count, default=5000, help="rows per batch (5000)")
    mig.add_argument("--dst-sessions-table", type=_identifier, metavar="NAME")
    mig.add_argument("--dst-messages-table", type=_identifier, metavar="NAME")

    purge = commands.add_parser(
        "purge",
        parents=[tables],
        help="delete sessions inactive for longer than an age",
        description="Delete the sessions whose last activity (the later of the record's "
        "updated_at and the newest item) is older than AGE, each in its own transaction.",
    )
    purge.add_argument("db", help=_DB_HELP)
    purge.add_argument(
        "--older-than", type=_age, required=True, metavar="AGE", help="30d, 12h, 90m or 2w"
    )
    purge.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    purge.add_argument("--json", action="store_true", help="print JSON")
    add_prune_parser(commands, tables, _DB_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-sessions",
        description="Inspect, move and maintain agent_sessions session stores.",
    )
    parser.add_argument("--version", action="version", version=f"agent-sessions {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_read_commands(commands)
    _add_write_commands(commands)
    add_memory_parser(commands, _DB_HELP)
    demo = commands.add_parser(
        "demo",
        help="hold a short conversation that survives a restart (offline unless OPENAI_API_KEY)",
        description="Run a conversation on a SQLite file, reopen it, and show that the agent "
        "remembers. Uses a deterministic offline model unless OPENAI_API_KEY is set.",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("agent_sessions_demo.db"),
        help="SQLite file to use (default: ./agent_sessions_demo.db)",
    )
    demo.add_argument("--offline", action="store_true", help=_OFFLINE_HELP)
    chat = commands.add_parser(
        "chat",
        parents=[_tables_options()],
        help="chat in the terminal, with /undo (offline unless OPENAI_API_KEY)",
        description="Chat with an agent whose conversation is stored in DB. /undo takes back "
        "the last exchange, /history shows it, /clear deletes it, /quit leaves.",
    )
    chat.add_argument(
        "db",
        nargs="?",
        default="agent_sessions_chat.db",
        help=_DB_HELP + " (default: ./agent_sessions_chat.db)",
    )
    chat.add_argument("--session", default="chat", metavar="ID", help="session id (chat)")
    chat.add_argument("--offline", action="store_true", help=_OFFLINE_HELP)
    return parser


async def _talk(args: argparse.Namespace) -> int:
    """``demo`` and ``chat``: a model failure is one line that names ``--offline``."""
    # The SDK import is only paid by these two commands.
    from .demo import model_failure, quiet_sdk_logs, run_demo  # noqa: PLC0415

    if not os.environ.get(_TRACEBACK):
        quiet_sdk_logs()
    try:
        if args.command == "demo":
            await run_demo(args.db, offline=args.offline)
        else:
            from ..schema import TableNames  # noqa: PLC0415
            from .chat import run_chat  # noqa: PLC0415

            tables = TableNames(args.sessions_table, args.messages_table)
            await run_chat(args.db, args.session, tables, offline=args.offline)
    except Exception as exc:
        message = model_failure(exc)
        if message is None or os.environ.get(_TRACEBACK):
            raise
        _error(message)
        return 1
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.command in ("demo", "chat"):
        return await _talk(args)
    if args.command == "memory":
        from .memory import run  # noqa: PLC0415

        return await run(args)
    if args.command != "memory":
        from .redis import is_redis, targets  # noqa: PLC0415 - urllib and the admin package

        if any(is_redis(target) for target in targets(args)):
            from .redis import run as run_redis  # noqa: PLC0415

            return await run_redis(args)
    from .commands import COMMANDS  # noqa: PLC0415 - SQLAlchemy only for these

    return await COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 1 on an error (reported on one line of stderr), 2 on a usage error,
        130 when interrupted.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    _no_collection_at_exit()
    import asyncio  # noqa: PLC0415 - after parsing: `--version` and `--help` never load it

    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("\nagent-sessions: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and let exit not flush into the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (AgentSessionsError, ValueError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:
        if os.environ.get(_TRACEBACK):
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (set {_TRACEBACK}=1 to see the traceback)")
        return 1


def _no_collection_at_exit() -> None:
    """Freeze the heap at exit, so that the interpreter's shutdown does not collect it.

    What a command imports lives until the end (some 45,000 objects the collector tracks after
    ``ls``, most of them SQLAlchemy's); collecting and freeing them while the interpreter shuts
    down took 40-60 ms of each database command (docs/performance.md). By then every file and
    connection is closed, and the memory goes back to the system with the process. Registered
    once, however often ``main`` runs in one process.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def _error(message: str) -> None:
    """Print one line of error on stderr, stored text in it escaped."""
    try:  # the admin package imports SQLAlchemy: loaded here, not at start-up
        from ..admin.text import one_line  # noqa: PLC0415
    except ImportError:  # it cannot load (the error may say why): escape everything but ASCII
        line = message.encode("unicode_escape").decode("ascii")
    else:
        line = one_line(message)
    print(f"agent-sessions: error: {line}", file=sys.stderr)
