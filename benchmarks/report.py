"""Medians, the markdown table and the noisy-cell list, shared by both suites of ``run.py``.

A suite hands over, per workload, every run of every contender (``Result``s), plus the error of
each run that failed. The table has one column per contender (operations per second, or the
time per call at each history size on the rows of a ``SIZED`` workload: µs per ``get_items(20)``
for growth, ms per ``create_branch_from_turn`` for branch) and one column per ratio, always a
speedup of ours.
"""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

from workloads import Result

__all__ = ["NOISY", "SIZED", "Ratio", "Sized", "failures", "noisy", "summarize", "table"]

NOISY = 0.20
"""Flag a median whose repeats spread (max - min) by more than this fraction of it."""

Ratio = tuple[str, str, str]
"""A ratio column: (label, our contender, the contender it is compared with)."""


class Sized(NamedTuple):
    """How a workload timed per history size is shown: one row per size, then a ratio row."""

    key: str  # where ``summarize`` puts the medians per size
    scale: float  # seconds -> the unit
    unit: str
    spec: str  # format of a cell
    last_row: str  # label of the largest/smallest row


SIZED: dict[str, Sized] = {
    "growth": Sized("us_per_call", 1e6, "µs/call", ",.1f", "flatness"),
    "branch": Sized("ms_per_branch", 1e3, "ms/branch", ",.2f", "ratio"),
}
"""Workloads whose ``Result.per_call`` maps history size to seconds per call."""


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def summarize(
    workload: str, runs: dict[str, list[Result]], errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Medians per contender (and per history size for growth), with every run kept.

    A contender whose every run failed gets ``{"error": ...}`` instead of medians; errors of
    runs that failed next to successful ones are kept under ``"errors"``.
    """
    errors = errors or {}
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        entry: dict[str, Any] = {"runs": [vars(r) | {"ops_per_s": r.ops_per_s} for r in results]}
        if errors.get(name):
            entry["errors"] = errors[name]
        if not results:
            entry["error"] = errors.get(name, ["no run"])[0]
        elif workload in SIZED:
            key, scale = SIZED[workload].key, SIZED[workload].scale
            sizes = sorted(results[0].per_call)
            per_size = {s: [r.per_call[s] * scale for r in results] for s in sizes}
            entry[key] = {s: statistics.median(v) for s, v in per_size.items()}
            entry["spread"] = {s: _spread(v) for s, v in per_size.items()}
            entry["flatness"] = entry[key][sizes[-1]] / entry[key][sizes[0]]
        else:
            values = [r.ops_per_s for r in results]
            entry["ops_per_s"] = statistics.median(values)
            entry["spread"] = _spread(values)
        summary[name] = entry
    return summary


def _size(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


_ABSENT = -1.0
"""Stands for a contender that does not run a workload (shown ``n/a``, not ``error``)."""


def _cells(values: list[float | None], spec: str) -> list[str]:
    return ["error" if v is None else "n/a" if v == _ABSENT else format(v, spec) for v in values]


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or _ABSENT in (numerator, denominator):
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def table(
    summaries: dict[str, dict[str, Any]], columns: dict[str, str], ratios: list[Ratio]
) -> list[str]:
    """Markdown rows; the ratio columns are speedups (> 1 means ours is faster).

    Args:
        summaries: ``summarize`` output per workload; a contender missing from a workload's
            summary did not run it (``n/a``).
        columns: contender name -> column label, in table order.
        ratios: ratio columns as (label, ours, theirs).
    """
    absent = {"ops_per_s": _ABSENT, "flatness": _ABSENT}
    labels = [*columns.values(), *(label for label, _, _ in ratios)]
    lines = [
        "| workload | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for workload, summary in summaries.items():
        s = {name: summary.get(name, absent) for name in columns}
        if workload not in SIZED:
            ops = {name: s[name].get("ops_per_s") for name in columns}
            cells = _cells(list(ops.values()), ",.0f")
            cells += [_ratio(ops[ours], ops[theirs]) for _, ours, theirs in ratios]
            lines.append(f"| {workload} (ops/s) | " + " | ".join(cells) + " |")
            continue
        sized = SIZED[workload]
        measured = [s[name] for name in columns if sized.key in s[name]]
        sizes = list(measured[0][sized.key]) if measured else []
        for size in sizes:
            us = {
                name: _ABSENT if s[name] is absent else s[name].get(sized.key, {}).get(size)
                for name in columns
            }
            cells = _cells(list(us.values()), sized.spec)
            cells += [_ratio(us[theirs], us[ours]) for _, ours, theirs in ratios]
            label = f"{workload} {_size(size)} ({sized.unit})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if not sizes:
            cells = ["error"] * len(columns) + ["n/a"] * len(ratios)
            lines.append(f"| {workload} | " + " | ".join(cells) + " |")
            continue
        flat = [s[name].get("flatness") for name in columns]
        cells = ["error" if v is None else "n/a" if v == _ABSENT else f"{v:.2f}x" for v in flat]
        lines.append(
            f"| {workload} {_size(sizes[-1])}/{_size(sizes[0])} ({sized.last_row}) | "
            + " | ".join(cells)
            + " |"
            + " |" * len(ratios)
        )
    return lines


def noisy(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Cells whose repeats disagree by more than ``NOISY`` of their median."""
    notes = []
    for workload, s in summaries.items():
        for name, entry in s.items():
            spread = entry.get("spread")
            if spread is None:
                continue
            spreads = spread if isinstance(spread, dict) else {"": spread}
            for size, spread in spreads.items():
                if spread > NOISY:
                    where = f"{workload} {_size(size)}" if size else workload
                    notes.append(f"{where}/{name}: repeats spread {spread:.0%} of the median")
    return notes


def failures(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """One line per failed run: which workload, which contender, what error."""
    return [
        f"{workload}/{name}: {error}"
        for workload, s in summaries.items()
        for name, entry in s.items()
        for error in entry.get("errors", [])
    ]
