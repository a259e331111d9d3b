"""Running a list of conformance checks against one harness: shared by both suites."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

__all__ = ["ConformanceError", "run_checks"]


class ConformanceError(AssertionError):
    """A session broke a promise of the protocol; the message says which."""


class _Closing(Protocol):
    async def close_all(self) -> None: ...


H = TypeVar("H", bound=_Closing)


async def run_checks(
    checks: Sequence[Callable[[H], Awaitable[None]]], harness: H
) -> dict[str, BaseException | None]:
    """Run each check in turn; map its name to its failure, or None if it passed.

    Whatever a check leaves open is closed before the next one runs.
    """
    outcome: dict[str, BaseException | None] = {}
    for check in checks:
        try:
            await check(harness)
            outcome[check.__name__] = None
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            outcome[check.__name__] = exc
        finally:
            await harness.close_all()
    return outcome
