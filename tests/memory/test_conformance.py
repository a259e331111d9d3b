"""Every memory backend passes every memory-store conformance check."""

from __future__ import annotations

import pytest

from agent_sessions.testing import MEMORY_CHECKS, MemoryCheck, MemoryHarness


@pytest.mark.parametrize("check", MEMORY_CHECKS, ids=lambda c: c.__name__)
async def test_memory_conformance(check: MemoryCheck, memory_harness: MemoryHarness) -> None:
    """Keeps the promise the check's docstring states, on this backend."""
    await check(memory_harness)
