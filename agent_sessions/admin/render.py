"""Text for the ``agent-sessions`` commands: sizes, times, tables and report summaries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .branches import BranchTree
from .catalogue import SearchHit, SessionInfo
from .migrate import MigrateReport
from .purge import PurgeReport
from .show import describe
from .stats import StoreStats
from .text import one_line
from .transfer import TransferReport

__all__ = [
    "branch_lines",
    "counted",
    "human_bytes",
    "migrate_lines",
    "purge_lines",
    "search_lines",
    "session_table",
    "stats_lines",
    "table",
    "transfer_line",
    "when",
]

_BAR = 24
_KIB = 1024
_NAMED = 5
"""Sessions named in a message before "and N more"."""
_SNIPPET = 80


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: ``1 session``, ``1,200 sessions``.

    Args:
        count: How many.
        noun: The singular noun.
        plural: The plural when it is not ``noun + "s"``.
    """
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def human_bytes(size: int | None) -> str:
    """A size as ``512 B``, ``1.5 KiB``, ``12.3 MiB``...; ``?`` if unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < _KIB or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= _KIB
    raise AssertionError("unreachable")  # pragma: no cover


def when(moment: datetime | None) -> str:
    """A time to the second, or ``-``."""
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell; the columns in ``right`` are right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def session_table(infos: Sequence[SessionInfo]) -> list[str]:
    """The ``ls`` table: id, items, size, first and last activity."""
    rows = [
        [
            one_line(info.session_id),
            f"{info.items:,}",
            human_bytes(info.bytes),
            when(info.first_activity),
            when(info.last_activity),
        ]
        for info in infos
    ]
    return table(["SESSION", "ITEMS", "SIZE", "FIRST ACTIVITY", "LAST ACTIVITY"], rows, {1, 2})


def stats_lines(stats: StoreStats) -> list[str]:
    """The ``stats`` report."""
    size = human_bytes(stats.size_bytes)
    if stats.dialect == "sqlite":
        size += f" (WAL {human_bytes(stats.wal_bytes)}; {human_bytes(stats.free_bytes)} free"
        size += ", returned to the disk by VACUUM)"
    elif stats.dialect != "postgresql":
        size += " (tables and indexes, as estimated by the server)"
    average = stats.data_bytes // stats.items if stats.items else 0
    lines = [
        f"store            {stats.location} ({stats.dialect})",
        f"size on disk     {size}",
        f"sessions         {stats.sessions:,}",
        f"items            {stats.items:,} ({human_bytes(stats.data_bytes)} of item data, "
        f"{human_bytes(average)} per item on average)",
        f"first activity   {when(stats.first_activity)}",
        f"last activity    {when(stats.last_activity)}",
    ]
    if stats.largest:
        lines += ["", f"largest sessions (top {len(stats.largest)} by size):"]
        lines += ["  " + line for line in session_table(stats.largest)]
    if stats.per_day:
        lines += ["", f"items written per day (last {len(stats.per_day)} days, still stored):"]
        peak = max(day.items for day in stats.per_day) or 1
        rows = [
            [day.day, f"{day.items:,}", human_bytes(day.bytes), "#" * -(-day.items * _BAR // peak)]
            for day in stats.per_day
        ]
        lines += ["  " + line for line in table(["DAY", "ITEMS", "SIZE", ""], rows, {1, 2})]
        added = sum(day.bytes for day in stats.per_day) / len(stats.per_day)
        lines.append(
            f"growth: {human_bytes(round(added))} of item data per day on average; "
            f"about {human_bytes(round(added * 30))} in 30 days at this rate"
        )
    return lines


def purge_lines(report: PurgeReport, location: str) -> list[str]:
    """The ``purge`` report: the sessions, then what was (or would be) deleted."""
    rows = [
        [
            one_line(info.session_id),
            f"{info.items:,}",
            human_bytes(info.bytes),
            when(info.last_activity),
        ]
        for info in report.sessions
    ]
    lines = table(["SESSION", "ITEMS", "SIZE", "LAST ACTIVITY"], rows, {1, 2}) if rows else []
    count = len(report.sessions)
    what = f"{counted(count, 'session')} ({counted(report.items, 'item')}, "
    what += f"{human_bytes(report.bytes)}) last active before {when(report.cutoff)}"
    if report.dry_run:
        lines.append(f"dry run: would purge {what} from {location}; nothing was deleted")
    else:
        lines.append(f"purged {what} from {location}")
    if report.kept:
        kept = ", ".join(repr(one_line(sid)) for sid in report.kept)
        lines.append(f"kept {len(report.kept)} that became active meanwhile: {kept}")
    return lines


def migrate_lines(report: MigrateReport, source: str, destination: str) -> list[str]:
    """The ``migrate`` summary."""
    rate = report.items / report.seconds if report.seconds > 0 else 0.0
    lines = [
        f"migrated {source} -> {destination} in {report.seconds:.1f} s: "
        f"{counted(report.sessions, 'session')}, {counted(report.items, 'item')} copied "
        f"({rate:,.0f} items/s)",
        f"  copied {len(report.copied):,}, already identical {len(report.identical):,}, "
        f"redone {len(report.redone):,}, replaced {len(report.replaced):,}, "
        f"conflicts {len(report.conflicts):,}",
        "  verified: every session copied or found identical matches the source "
        "(count and SHA-256)",
    ]
    if report.conflicts:
        shown = ", ".join(repr(one_line(s)) for s in report.conflicts[:_NAMED])
        extra = len(report.conflicts) - _NAMED
        more = f" and {extra} more" if extra > 0 else ""
        lines.append(
            f"  {counted(len(report.conflicts), 'session')} differ at the destination and were "
            f"left alone: {shown}{more}; use --replace to overwrite them"
        )
    if report.trees:
        count = len(report.trees)
        lines.append(
            f"  branch trees: {counted(count, 'session')} copied with their "
            "branches, usage and current branch (verified too)"
        )
    lines += [f"  note: {note}" for note in report.notes]
    return lines


def transfer_line(verb: str, report: TransferReport, where: str) -> str:
    """The one-line summary of an export or import."""
    trees = f", {report.trees:,} with branch trees" if report.trees else ""
    line = f"{verb} {counted(report.sessions, 'session')} ({counted(report.items, 'item')}{trees}) "
    line += f"{where} "
    line += f"in {report.seconds:.1f} s"
    if report.skipped:
        line += f"; skipped {len(report.skipped):,} existing"
    if report.replaced:
        line += f"; replaced {len(report.replaced):,} existing"
    return line


def _tokens(requests: int, inputs: int, outputs: int, total: int) -> list[str]:
    return [f"{requests:,}", f"{inputs:,}", f"{outputs:,}", f"{total:,}"]


def branch_lines(tree: BranchTree) -> list[str]:
    """The branches of an advanced session, then its token usage per branch and turn."""
    rows = [
        [
            "*" if branch.current else "",
            one_line(branch.branch_id),
            "-" if branch.parent_id is None else one_line(branch.parent_id),
            f"{branch.items:,}",
            f"{branch.user_turns:,}",
            branch.created_at or "-",
        ]
        for branch in tree.branches
    ]
    headers = ["", "BRANCH", "PARENT", "ITEMS", "USER TURNS", "CREATED"]
    lines = ["", "branches (* current):", *("  " + line for line in table(headers, rows, {3, 4}))]
    usage = tree.usage
    if usage is None:
        return [*lines, "", "usage: none recorded"]
    lines.append("")
    lines.append(
        f"usage: {usage.requests:,} requests, {usage.input_tokens:,} input + "
        f"{usage.output_tokens:,} output = {usage.total_tokens:,} tokens "
        f"over {usage.turns:,} turns"
    )
    rows = []
    for branch in tree.branches:
        if branch.usage is None:
            continue
        name = one_line(branch.branch_id)
        for turn in branch.turns:
            counts = (turn.requests, turn.input_tokens, turn.output_tokens, turn.total_tokens)
            rows.append([name, str(turn.turn), *_tokens(*counts)])
        totals = branch.usage
        counts = (totals.requests, totals.input_tokens, totals.output_tokens, totals.total_tokens)
        rows.append([name, "all", *_tokens(*counts)])
    headers = ["BRANCH", "TURN", "REQUESTS", "INPUT", "OUTPUT", "TOTAL"]
    return [*lines, *("  " + line for line in table(headers, rows, {1, 2, 3, 4, 5}))]


def search_lines(hits: Sequence[SearchHit]) -> list[str]:
    """One line per matching row: session, row id, time, and what the row says."""
    rows = []
    for hit in hits:
        entry = describe(hit.text)
        body = " ".join(entry.body.split())
        rows.append(
            [
                one_line(hit.session_id),
                f"#{hit.item_id}",
                when(hit.created_at),
                one_line(entry.label),
                one_line(body[:_SNIPPET]) + ("..." if len(body) > _SNIPPET else ""),
            ]
        )
    return table(["SESSION", "ROW", "TIME", "KIND", "TEXT"], rows, set())
