"""The whole session suite: the protocol checks, then the ``replace_items`` ones."""

from __future__ import annotations

from .archive_checks import ARCHIVE_CHECKS
from .checks import run_checks
from .metadata_checks import METADATA_CHECKS
from .provenance_checks import PROVENANCE_CHECKS
from .prune_checks import PRUNE_CHECKS
from .replace_checks import REPLACE_CHECKS
from .sessions import SESSION_CHECKS, Check, Harness
from .state_checks import STATE_CHECKS

__all__ = ["CHECKS", "run_all"]

CHECKS: list[Check] = [
    *SESSION_CHECKS,
    *REPLACE_CHECKS,
    *PRUNE_CHECKS,
    *STATE_CHECKS,
    *METADATA_CHECKS,
    *ARCHIVE_CHECKS,
    *PROVENANCE_CHECKS,
]
"""Every check, in a stable order; each is an async function taking a :class:`Harness`."""


async def run_all(harness: Harness) -> dict[str, BaseException | None]:
    """Run every check against ``harness`` and return each check's failure (None if it passed)."""
    return await run_checks(CHECKS, harness)
