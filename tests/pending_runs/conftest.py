"""Our session backends that keep per-session state, each with its marker (the conformance set)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sessions.testing import Harness
from tests.conformance.conftest import BACKENDS, MARKS

STATEFUL = sorted(name for name in BACKENDS if "sdk" not in name and "redis" not in name)
"""Every backend of ours with per-session state (the SDK's classes and Redis keep none)."""


@pytest.fixture(params=[pytest.param(name, marks=MARKS[name]) for name in STATEFUL])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness for each stateful backend on a fresh database; its sessions close afterwards."""
    built = BACKENDS[request.param].build(tmp_path)
    yield built
    await built.close_all()
