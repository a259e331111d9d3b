"""Token usage for :mod:`agent_sessions.backends.advanced`: run usage to rows and back."""

from __future__ import annotations

from typing import Any, cast

from agents.usage import Usage

from ...serialization import JsonCodec
from .ops import UsageRow
from .types import SessionUsage, TurnUsage

__all__ = ["session_totals", "turn_dicts", "usage_row"]

_JSON = JsonCodec()


def _details(value: object) -> str | None:
    """Return token details (a pydantic model or a dict) as stored JSON text."""
    if value is None:
        return None
    dump = getattr(value, "model_dump", None)
    data = dump() if callable(dump) else value
    return _JSON.encode(cast(Any, data)) if isinstance(data, dict) else None


def _parse(text: str | None) -> dict[str, Any] | None:
    """Return stored token details as a dict; None if absent or unreadable."""
    if text is None:
        return None
    try:
        return cast(dict[str, Any], _JSON.decode(text))
    except ValueError:
        return None


def usage_row(usage: Usage) -> UsageRow:
    """Return a run's usage as a row to store (the store fills in the turn)."""
    return UsageRow(
        0,
        usage.requests,
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
        _details(usage.input_tokens_details),
        _details(usage.output_tokens_details),
    )


def session_totals(row: tuple[Any, ...]) -> SessionUsage | None:
    """Return summed usage as the SDK's dict, or None if no usage was recorded."""
    if row[0] is None:
        return None
    requests, input_tokens, output_tokens, total_tokens, turns = (int(v or 0) for v in row)
    return SessionUsage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        total_turns=turns,
    )


def turn_dicts(rows: list[UsageRow]) -> list[TurnUsage]:
    """Return usage rows as the SDK's per-turn dicts, with the token details parsed."""
    return [
        TurnUsage(
            user_turn_number=row.user_turn,
            requests=row.requests,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            total_tokens=row.total_tokens,
            input_tokens_details=_parse(row.input_tokens_details),
            output_tokens_details=_parse(row.output_tokens_details),
        )
        for row in rows
    ]
