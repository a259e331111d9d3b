"""The ``agent-sessions`` database commands: call :mod:`agent_sessions.admin`, print results.

Each command takes the parsed arguments and returns the exit status. Results go to stdout;
progress bars and notes that are not the result go to stderr, so output can be piped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..admin import Conflict, SearchHit, SessionDatabase, migrate
from ..admin.render import (
    branch_lines,
    human_bytes,
    migrate_lines,
    purge_lines,
    search_lines,
    session_table,
    stats_lines,
    transfer_line,
    when,
)
from ..admin.show import entry_dict, render_entries
from ..admin.text import one_line, printable
from ..errors import StorageError
from ..serialization import JsonCodec
from .progress import ProgressBar

if TYPE_CHECKING:
    from ..admin.sealed import SealedSummary

__all__ = ["COMMANDS"]

_JSON = JsonCodec()
_CLIP = 400
"""Characters of an item's text ``show`` prints unless ``--full``."""


def _print(*lines: str) -> None:
    # The renderers escape stored text cell by cell (so columns line up); this is the net
    # under them: nothing that reaches the terminal can drive it.
    for line in lines:
        print(printable(line))


def _note(line: str) -> None:
    print(printable(line), file=sys.stderr)


def _print_json(value: Any) -> None:
    print(_JSON.encode(value))


def _open(args: argparse.Namespace, target: str | None = None) -> SessionDatabase:
    return SessionDatabase(
        target or args.db,
        sessions_table=args.sessions_table,
        messages_table=args.messages_table,
    )


async def ls(args: argparse.Namespace) -> int:
    """List sessions with their size and activity."""
    filters: dict[str, Any] = {
        "prefix": args.prefix,
        "older_than": args.older_than,
        "newer_than": args.newer_than,
        "min_items": args.min_items,
        "min_bytes": args.min_size,
        "where": dict(args.where or []) or None,
        "agent": args.agent,
    }
    # Activity, sizes and counts read best largest or newest first; ids alphabetically.
    descending = (args.sort != "id") != args.reverse
    async with _open(args) as db:
        try:
            infos = await db.list_sessions(
                **filters,
                sort=args.sort,
                descending=descending,
                limit=args.limit,
                offset=args.offset,
            )
        except StorageError as exc:
            _memory_store_hint(args.db, exc)
            raise
        total = await db.count_sessions(**filters)
    if args.json:
        _print_json({"total": total, "sessions": [info.to_dict() for info in infos]})
        return 0
    if infos:
        _print(*session_table(infos))
    shown = f"{args.offset + 1}-{args.offset + len(infos)} of " if len(infos) < total else ""
    if not infos and args.offset:
        shown = f"none past the first {args.offset:,} of "
    more = "; --limit/--offset show others" if len(infos) < total else ""
    _print(f"{shown}{total:,} session{'s' if total != 1 else ''}{more}")
    return 0


def _memory_store_hint(target: str, error: StorageError) -> None:
    """Raise a clearer error when a file without session tables is a memory store."""
    if "://" in target or "has no table" not in str(error):
        return
    from ..memory.admin import memory_tables_in  # noqa: PLC0415

    try:
        tables = memory_tables_in(target)
    except StorageError:
        return
    if tables:
        table = "" if tables == ["agent_memories"] else f" --table {tables[0]}"
        raise StorageError(
            f"{target} is a memory store (table {', '.join(tables)}), not a session database: "
            f"see agent-sessions memory ls {target}{table}"
        ) from error


def _env_keys(names: list[str] | None) -> list[str] | None:
    """The master keys in the environment variables named by ``--key-env``, newest first."""
    if not names:
        return None
    keys = []
    for name in names:
        key = os.environ.get(name)
        if not key:
            raise ValueError(f"--key-env {name}: that environment variable is not set")
        keys.append(key)
    return keys


def _sealed_lines(summary: SealedSummary, keyed: bool) -> list[str]:
    """The header lines that say how a session's rows are encrypted."""
    if not summary.encrypted:
        return []
    kids = ", ".join(f"{kid} ({n:,})" for kid, n in summary.key_ids.items())
    lines = [f"encrypted: {summary.encrypted:,} row(s) under key id {kids}"]
    if not keyed:
        lines.append("(--key-env VAR decrypts them with the master key in VAR)")
    elif summary.undecryptable:
        bad = ", ".join(f"{kid} ({n:,})" for kid, n in summary.undecryptable.items())
        lines.append(
            f"undecryptable: {sum(summary.undecryptable.values()):,} row(s) the given key(s) "
            f"do not open, under key id {bad}"
        )
    return lines


async def show(args: argparse.Namespace) -> int:
    """Print one conversation."""
    from ..admin.sealed import data_key_record, open_rows  # noqa: PLC0415 - on demand

    keys = _env_keys(args.key_env)
    if args.key_store and not keys:
        raise ValueError("--key-store needs --key-env: the data key is unwrapped with the key")
    record = data_key_record(args.key_store, args.session_id) if args.key_store else None
    async with _open(args) as db:
        info = await db.session(args.session_id)
        rows = await db.rows(args.session_id, limit=args.limit)
        branches = await db.row_branches(args.session_id)
        tree = await db.branch_tree(args.session_id)
        archive = await db.archive_size(args.session_id)
    opened_rows, sealed = open_rows(rows, args.session_id, keys, record)
    del keys
    opened = {item.row.id: item for item in opened_rows}
    if args.json:
        document: dict[str, Any] = {
            "session": info.to_dict(),
            "items": [entry_dict(row, branches.get(row.id), opened[row.id]) for row in rows],
            "archived_items": archive.items,
        }
        if sealed.encrypted:
            document["encryption"] = sealed.to_dict()
        if tree is not None:
            document.update(tree.to_dict())
        _print_json(document)
        return 0
    _print(
        f"session '{one_line(info.session_id)}': {info.items:,} items, {human_bytes(info.bytes)}, "
        f"first activity {when(info.first_activity)}, last activity {when(info.last_activity)}"
    )
    if info.metadata_status == "plain":
        _print(f"metadata: {_JSON.encode(info.metadata)}")  # type: ignore[arg-type]
    elif info.metadata_status != "none":
        _print(f"metadata: ({info.metadata_status})")
    if len(rows) < info.items:
        _print(f"(the newest {len(rows):,} of {info.items:,} items)")
    if archive.items:
        _print(
            f"archive: {archive.items:,} item(s) from {archive.batches:,} compaction(s) or "
            "prune(s) (archived_items() reads them, uncompact() restores a compaction)"
        )
    _print(*_sealed_lines(sealed, keyed=bool(args.key_env)))
    _print("", *render_entries(rows, branches, limit=None if args.full else _CLIP, opened=opened))
    if tree is not None:
        _print(*branch_lines(tree))
    return 0


async def search(args: argparse.Namespace) -> int:
    """Find items containing a text across every session."""
    async with _open(args) as db:
        hits = await db.search(args.text, limit=args.limit)
    if args.json:
        _print_json({"matches": [_hit_dict(hit) for hit in hits]})
        return 0
    if hits:
        _print(*search_lines(hits))
    cut = f" (the first {args.limit}; --limit shows more)" if len(hits) == args.limit else ""
    _print(f"{len(hits):,} matching item{'s' if len(hits) != 1 else ''}{cut}")
    return 0


def _hit_dict(hit: SearchHit) -> dict[str, Any]:
    """A search hit for ``--json``."""
    return {
        "session_id": hit.session_id,
        "id": hit.item_id,
        "created_at": when(hit.created_at),
        "data": hit.text,
    }


async def export(args: argparse.Namespace) -> int:
    """Write sessions to a JSON Lines file (or stdout)."""
    to_stdout = args.output in (None, "-")
    bar = ProgressBar("export", enabled=not args.quiet)
    async with _open(args) as db:
        try:
            destination = sys.stdout if to_stdout else args.output
            report = await db.export_jsonl(
                destination, args.session_ids or None, overwrite=args.force, progress=bar
            )
        finally:
            bar.close()
    line = transfer_line("exported", report, "to stdout" if to_stdout else f"to {args.output}")
    if to_stdout:
        if not args.quiet:
            _note(line)
    else:
        _print(line)
    return 0


async def import_(args: argparse.Namespace) -> int:
    """Read a JSON Lines export into a database."""
    conflict: Conflict = "replace" if args.replace else "skip" if args.skip_existing else "error"
    bar = ProgressBar("import", enabled=not args.quiet)
    async with SessionDatabase(
        args.db,
        sessions_table=args.sessions_table,
        messages_table=args.messages_table,
        create=True,
    ) as db:
        try:
            report = await db.import_jsonl(args.file, on_conflict=conflict, progress=bar)
        finally:
            bar.close()
        _print(transfer_line("imported", report, f"into {db.location}"))
    return 0


async def migrate_(args: argparse.Namespace) -> int:
    """Copy every session from one database to another, verified and resumable."""
    bar = ProgressBar("migrate", enabled=not args.quiet)
    async with (
        _open(args, args.src) as source,
        SessionDatabase(
            args.dst,
            sessions_table=args.dst_sessions_table or args.sessions_table,
            messages_table=args.dst_messages_table or args.messages_table,
            create=True,
        ) as destination,
    ):
        try:
            report = await migrate(
                source,
                destination,
                session_ids=args.session_ids or None,
                replace=args.replace,
                batch_size=args.batch_size,
                progress=bar,
            )
        finally:
            bar.close()
        _print(*migrate_lines(report, source.location, destination.location))
    return 1 if report.conflicts else 0


async def stats(args: argparse.Namespace) -> int:
    """Print the size and growth of a store."""
    async with _open(args) as db:
        found = await db.stats(top=args.top, days=args.days)
    if args.json:
        _print_json(found.to_dict())
    else:
        _print(*stats_lines(found))
    return 0


async def purge(args: argparse.Namespace) -> int:
    """Delete sessions inactive for longer than an age."""
    async with _open(args) as db:
        report = await db.purge(args.older_than, dry_run=args.dry_run)
        if args.json:
            _print_json(report.to_dict())
        else:
            _print(*purge_lines(report, db.location))
            if db.dialect == "sqlite" and report.sessions and not report.dry_run:
                _note("note: the file keeps its size; VACUUM it to return the space to the disk")
    return 0


async def prune(args: argparse.Namespace) -> int:
    """Keep each session's newest turns and remove the older whole turns."""
    from .prune import prune_database, report_dict, report_lines  # noqa: PLC0415

    async with _open(args) as db:
        reports = await prune_database(
            db,
            args.db,
            args.session_ids,
            keep_last_turns=args.keep_last_turns,
            keep_system=not args.drop_system,
            dry_run=args.dry_run,
            archive=args.archive,
        )
        if args.json:
            _print_json(report_dict(reports))
        else:
            _print(*report_lines(reports, db.location, dry_run=args.dry_run))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "ls": ls,
    "show": show,
    "search": search,
    "export": export,
    "import": import_,
    "migrate": migrate_,
    "stats": stats,
    "purge": purge,
    "prune": prune,
}
"""The database commands by name."""
