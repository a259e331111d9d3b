"""The public conformance suite, run over every backend by the ``backend`` fixture."""

from __future__ import annotations

import pytest

from agent_sessions.testing import CHECKS, Check, Harness


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
async def test_conformance(check: Check, backend: Harness) -> None:
    """The backend keeps the promise that the check's docstring states."""
    await check(backend)
