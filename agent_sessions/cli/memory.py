"""``agent-sessions memory``: look inside a memory store (``MemoryStore``'s table).

``ls`` lists namespaces with their counts, ``show`` prints one memory with its expiry,
``search`` runs a query the way an agent's ``recall`` tool does, ``export`` writes the live
memories as JSON Lines and ``purge`` deletes the expired ones. The work is done by
:class:`agent_sessions.memory.admin.MemoryDatabase`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..memory.admin import MemoryDatabase, MemoryRecord

__all__ = ["add_parser", "run"]

_NAMESPACE_HELP = (
    "labels joined by '/', such as users/alice; or a JSON list, such as '[\"users\", \"a/b\"]'"
)


def namespace(text: str) -> tuple[str, ...]:
    """Parse a namespace argument: ``users/alice``, or a JSON list of labels."""
    if text.startswith("["):
        try:
            labels = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid namespace {text!r}: {exc}") from exc
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise argparse.ArgumentTypeError(f"invalid namespace {text!r}: a list of strings")
        return tuple(labels)
    return tuple(label for label in text.split("/") if label)


def _shown(labels: tuple[str, ...]) -> str:
    if any("/" in label for label in labels):
        return json.dumps(list(labels), ensure_ascii=False)
    return "/".join(labels)


def add_parser(commands: Any, db_help: str) -> None:
    """Add ``memory`` and its subcommands to the command line."""
    memory = commands.add_parser(
        "memory",
        help="look inside a memory store: namespaces, memories, search, export, purge",
        description="Inspect a MemoryStore's table (agent_memories by default) on a SQLite "
        "file or a database URL. Read commands never create a file or a table.",
    )
    sub = memory.add_subparsers(dest="memory_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("db", help=db_help)
    common.add_argument("--table", default="agent_memories", metavar="NAME", help="memories table")
    common.add_argument(
        "--key-env",
        metavar="VAR",
        help="decrypt values with the key in environment variable VAR (never on the command line)",
    )
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON")

    ls = sub.add_parser(
        "ls",
        parents=[common, json_flag],
        help="namespaces with their memory counts",
        description="List the namespaces holding memories: live and expired counts, last write.",
    )
    ls.add_argument("--prefix", type=namespace, default=(), help="only under this namespace")

    show = sub.add_parser(
        "show",
        parents=[common, json_flag],
        help="one memory: its value and expiry",
        description="Print one memory's value, creation, last write and expiry (also when "
        "expired: searches no longer return it).",
    )
    show.add_argument("namespace", type=namespace, help=_NAMESPACE_HELP)
    show.add_argument("key", help="the memory's key")

    search = sub.add_parser(
        "search",
        parents=[common, json_flag],
        help="search one namespace as the agent's recall tool does",
        description="Run QUERY the way memory_tools' recall does: the best matches, or the "
        "newest memories when nothing matches. Keyword search (the database's full-text "
        "index) unless --index names an embedder.",
    )
    search.add_argument("namespace", type=namespace, help=_NAMESPACE_HELP)
    search.add_argument("query", help="what to look for")
    search.add_argument("--limit", type=int, default=5, help="at most N memories (5, as recall)")
    search.add_argument(
        "--index",
        default=None,
        metavar="SPEC",
        help="rank by meaning: 'local' or 'openai:<model>' (the embedder the app used)",
    )

    export = sub.add_parser(
        "export",
        parents=[common],
        help="write the live memories as JSON Lines",
        description="Write every live memory (namespace, key, value, times, expiry) as one "
        "JSON line. Undecodable memories are left out and counted on stderr.",
    )
    export.add_argument("--prefix", type=namespace, default=(), help="only under this namespace")
    export.add_argument("-o", "--output", metavar="FILE", help="the file (default: stdout)")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")

    purge = sub.add_parser(
        "purge",
        parents=[common, json_flag],
        help="delete expired memories (TTL)",
        description="Delete every memory whose TTL has run out, in one transaction.",
    )
    purge.add_argument("--dry-run", action="store_true", help="count them, delete nothing")


def _open(args: argparse.Namespace, index: str | None = None) -> MemoryDatabase:
    from ..memory.admin import MemoryDatabase  # noqa: PLC0415 - the database stack, on demand

    key = None
    if args.key_env:
        key = os.environ.get(args.key_env)
        if not key:
            raise ValueError(f"--key-env {args.key_env}: that environment variable is not set")
    return MemoryDatabase(args.db, table=args.table, index=index, encryption_key=key)


def _print(*lines: str) -> None:
    from ..admin.text import printable  # noqa: PLC0415

    for line in lines:
        print(printable(line))


def _print_json(value: Any) -> None:
    from ..serialization import JsonCodec  # noqa: PLC0415

    print(JsonCodec().encode(value))


async def _ls(args: argparse.Namespace) -> int:
    from ..admin.render import table, when  # noqa: PLC0415
    from ..admin.text import one_line  # noqa: PLC0415

    async with _open(args) as db:
        found = await db.namespaces(args.prefix)
    if args.json:
        _print_json({"namespaces": [summary.to_dict() for summary in found]})
        return 0
    rows = [
        [one_line(_shown(s.namespace)), f"{s.memories:,}", f"{s.expired:,}", when(s.last_updated)]
        for s in found
    ]
    if rows:
        _print(*table(["namespace", "memories", "expired", "last write"], rows, right={1, 2}))
    total = sum(s.memories for s in found)
    spaces = "namespace" if len(found) == 1 else "namespaces"
    _print(f"{len(found):,} {spaces}, {total:,} live memor{'y' if total == 1 else 'ies'}")
    return 0


def _record_lines(record: MemoryRecord) -> list[str]:
    from ..admin.render import when  # noqa: PLC0415
    from ..admin.text import one_line  # noqa: PLC0415

    if record.expires_at is None:
        expiry = "never"
    else:
        state = "expired" if record.expired else f"ttl {record.ttl:g} s"
        expiry = f"{when(record.expires_at)} ({state})"
    value = (
        f"(unreadable: {record.error})"
        if record.value is None
        else json.dumps(record.value, ensure_ascii=False, indent=2)
    )
    return [
        f"namespace: {one_line(_shown(record.namespace))}",
        f"key: {one_line(record.key)}",
        f"created: {when(record.created_at)}",
        f"updated: {when(record.updated_at)}",
        f"expires: {expiry}",
        f"value: {value}",
    ]


async def _show(args: argparse.Namespace) -> int:
    from ..errors import StorageError  # noqa: PLC0415

    async with _open(args) as db:
        record = await db.show(args.namespace, args.key)
    if record is None:
        raise StorageError(f"no memory {args.key!r} in namespace {_shown(args.namespace)!r}")
    if args.json:
        _print_json({**record.to_dict(), "expired": record.expired})
    else:
        _print(*_record_lines(record))
    return 0


async def _search(args: argparse.Namespace) -> int:
    from ..admin.text import one_line  # noqa: PLC0415
    from ..memory.tools import memory_text  # noqa: PLC0415

    async with _open(args, args.index) as db:
        matched, items = await db.search(args.namespace, args.query, limit=args.limit)
        mode = db.store.search_mode
    if args.json:
        _print_json(
            {
                "matched": matched,
                "search_mode": mode,
                "memories": [
                    {
                        "key": i.key,
                        "value": i.value,
                        "score": i.score,
                        "namespace": list(i.namespace),
                    }
                    for i in items
                ],
            }
        )
        return 0
    if not items:
        _print("no memories in this namespace")
        return 0
    header = "matches" if matched else "nothing matched; the newest memories (as recall answers)"
    _print(f"{header} ({mode} search):")
    for item in items:
        score = "" if item.score is None else f" {item.score:.2f}"
        _print(f"- [{one_line(item.key)}]{score} {one_line(memory_text(item))}")
    return 0


def _destination(path: str, *, force: bool) -> IO[str]:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise FileExistsError(f"{path} exists: --force replaces it") from exc
    return os.fdopen(fd, "w", encoding="utf-8")


async def _export(args: argparse.Namespace) -> int:
    to_stdout = args.output in (None, "-")
    with ExitStack() as stack:
        async with _open(args) as db:
            out = (
                sys.stdout
                if to_stdout
                else stack.enter_context(_destination(args.output, force=args.force))
            )
            report = await db.export_jsonl(out, args.prefix)
    where = "to stdout" if to_stdout else f"to {args.output}"
    line = f"exported {report.memories:,} memor{'y' if report.memories == 1 else 'ies'} {where}"
    if report.unreadable:
        line += f"; left out {report.unreadable:,} unreadable"
    print(line, file=sys.stderr if to_stdout else sys.stdout)
    return 0


async def _purge(args: argparse.Namespace) -> int:
    async with _open(args) as db:
        report = await db.purge(dry_run=args.dry_run)
        location = db.location
    if args.json:
        _print_json(report.to_dict())
    elif report.dry_run:
        _print(f"{location}: would delete {report.expired:,} expired memories")
    else:
        _print(f"{location}: deleted {report.deleted:,} expired memories")
    return 0


async def run(args: argparse.Namespace) -> int:
    """Run the parsed ``memory`` subcommand; return the exit status."""
    commands = {
        "ls": _ls,
        "show": _show,
        "search": _search,
        "export": _export,
        "purge": _purge,
    }
    return await commands[args.memory_command](args)
