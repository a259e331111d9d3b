"""The database commands on a Redis URL: ``ls``, ``show``, ``export``, ``import``, ``migrate``.

A target is a Redis URL (``redis://``, ``rediss://``, ``unix://``); the sessions' key prefix is
``agents:session`` unless the URL says otherwise with ``?key_prefix=...`` (taken off the URL
before it reaches the client). ``migrate`` copies between Redis and any database the other
commands take, through a checked export (see :func:`agent_sessions.admin.redis.copy_between`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:  # the admin package (SQLAlchemy, redis) loads only when a command runs
    from ..admin import Conflict
    from ..admin.catalogue import SessionInfo
    from ..admin.redis import RedisDatabase

__all__ = ["is_redis", "run"]

_SCHEMES = ("redis://", "rediss://", "unix://")
_CLIP = 400
_SORTS = {
    "activity": lambda i: (i.last_activity is not None, i.last_activity or 0),
    "created": lambda i: (i.first_activity is not None, i.first_activity or 0),
    "id": lambda i: i.session_id,
    "items": lambda i: i.items,
    "size": lambda i: i.bytes,
}


def is_redis(target: object) -> bool:
    """Whether a command's target names a Redis server."""
    return isinstance(target, str) and target.lower().startswith(_SCHEMES)


def open_redis(target: str) -> RedisDatabase:
    """A :class:`RedisDatabase` for a URL, its ``key_prefix`` query parameter taken off."""
    from ..admin.redis import RedisDatabase  # noqa: PLC0415

    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "key_prefix"]
    rest = urlencode([(key, value) for key, value in query if key != "key_prefix"])
    url = urlunsplit(parts._replace(query=rest))
    return RedisDatabase(url, key_prefix=prefixes[-1] if prefixes else "agents:session")


def _matches(info: SessionInfo, args: argparse.Namespace) -> bool:
    if args.prefix and not info.session_id.startswith(args.prefix):
        return False
    return bool(info.items >= args.min_items and info.bytes >= args.min_size)


async def ls(args: argparse.Namespace) -> int:
    """List a Redis server's sessions under the prefix (age filters are not supported).

    ``--where`` and ``--agent`` are compared in Python, session by session.
    """
    from ..admin.render import session_table  # noqa: PLC0415

    if args.older_than or args.newer_than:
        raise ValueError("--older-than and --newer-than are not supported on Redis")
    async with open_redis(args.db) as db:
        listed = await db.list_sessions(where=dict(args.where or []) or None, agent=args.agent)
        infos = [info for info in listed if _matches(info, args)]
    descending = (args.sort != "id") != args.reverse
    infos.sort(key=_SORTS[args.sort], reverse=descending)
    total = len(infos)
    infos = infos[args.offset : args.offset + args.limit]
    if args.json:
        print(json.dumps({"total": total, "sessions": [i.to_dict() for i in infos]}))
        return 0
    if infos:
        print("\n".join(session_table(infos)))
    print(f"{total:,} session{'s' if total != 1 else ''}")
    return 0


async def show(args: argparse.Namespace) -> int:
    """Print one conversation stored on Redis."""
    from ..admin.render import human_bytes, when  # noqa: PLC0415
    from ..admin.show import entry_dict, render_entries  # noqa: PLC0415
    from ..admin.text import one_line  # noqa: PLC0415

    async with open_redis(args.db) as db:
        info = await db.session(args.session_id)
        rows = await db.rows(args.session_id)
    if args.limit is not None:
        rows = rows[-args.limit :] if args.limit else []
    if args.json:
        items = [entry_dict(row, None) for row in rows]
        print(json.dumps({"session": info.to_dict(), "items": items}))
        return 0
    print(
        f"session '{one_line(info.session_id)}': {info.items:,} items, {human_bytes(info.bytes)}, "
        f"created {when(info.created_at)}, updated {when(info.updated_at)}"
    )
    print("\n".join(["", *render_entries(rows, {}, limit=None if args.full else _CLIP)]))
    return 0


async def export(args: argparse.Namespace) -> int:
    """Write a Redis server's sessions to a JSON Lines file."""
    from ..admin.render import transfer_line  # noqa: PLC0415

    if args.output in (None, "-"):
        raise ValueError("exporting from Redis needs an output file (-o FILE)")
    async with open_redis(args.db) as db:
        report = await db.export_jsonl(args.output, args.session_ids or None, overwrite=args.force)
    print(transfer_line("exported", report, f"to {args.output}"))
    return 0


def _conflict(args: argparse.Namespace) -> Conflict:
    return "replace" if args.replace else "skip" if args.skip_existing else "error"


async def import_(args: argparse.Namespace) -> int:
    """Read a JSON Lines export into a Redis server."""
    from ..admin.render import transfer_line  # noqa: PLC0415

    async with open_redis(args.db) as db:
        report = await db.import_jsonl(args.file, on_conflict=_conflict(args))
    print(transfer_line("imported", report, f"into {db.location}"))
    return 0


def _side(target: str, args: argparse.Namespace, *, destination: bool) -> Any:
    from ..admin import SessionDatabase  # noqa: PLC0415

    if is_redis(target):
        return open_redis(target)
    sessions = (destination and args.dst_sessions_table) or args.sessions_table
    messages = (destination and args.dst_messages_table) or args.messages_table
    return SessionDatabase(
        target, sessions_table=sessions, messages_table=messages, create=destination
    )


async def migrate(args: argparse.Namespace) -> int:
    """Copy every session between Redis and another database (either way)."""
    from ..admin.redis import copy_between  # noqa: PLC0415
    from ..admin.render import transfer_line  # noqa: PLC0415

    if args.session_ids:
        raise ValueError("migrate to or from Redis copies every session (no SESSION_ID)")
    conflict: Conflict = "replace" if args.replace else "skip"
    async with (
        _side(args.src, args, destination=False) as source,
        _side(args.dst, args, destination=True) as target,
    ):
        report = await copy_between(source, target, on_conflict=conflict)
    print(transfer_line("migrated", report, f"from {args.src} to {args.dst}"), file=sys.stdout)
    return 0


_COMMANDS = {"ls": ls, "show": show, "export": export, "import": import_, "migrate": migrate}


def targets(args: argparse.Namespace) -> list[str]:
    """The databases a command names."""
    return [value for name in ("db", "src", "dst") if (value := getattr(args, name, None))]


async def run(args: argparse.Namespace) -> int:
    """Run a database command whose target is a Redis URL.

    Raises:
        ValueError: the command does not work on Redis (search, stats, purge, prune).
    """
    command = _COMMANDS.get(args.command)
    if command is None:
        raise ValueError(f"agent-sessions {args.command} does not work on Redis yet")
    return await command(args)
