"""The conformance suite: checks any implementation of the SDK's ``Session`` protocol can run.

Describe your backend with a :class:`Harness` (how to open a session on one shared database,
and optionally how to reopen it and how to plant an undecodable row), then run every check::

    from agent_sessions.testing import CHECKS, Harness

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, tmp_path):
        await check(Harness(name="mine", open=lambda sid: MySession(sid, tmp_path / "db")))

A check raises :class:`ConformanceError` (an ``AssertionError``) naming what went wrong. Session
checks that need a capability the harness lacks (``write_raw``, ``persistent``...) return early.
:data:`ADVANCED_CHECKS` (branches, turns, usage: :mod:`agent_sessions.testing.advanced`) run on
the same :class:`Harness`; one that needs a method the session lacks raises :class:`Unsupported`
(see :func:`requires`), so the SDK's ``AdvancedSQLiteSession`` runs those it can. The module
imports nothing beyond the SDK and the standard library, so it works without our optional
backends. :class:`DictStore` is the reference store the suite is proven against.
"""

from __future__ import annotations

from .advanced import ADVANCED_CHECKS, Unsupported, requires, run_advanced_checks
from .checks import ConformanceError
from .memory import MEMORY_CHECKS, ManualClock, MemoryCheck, MemoryHarness, run_memory_checks
from .reference import DictStore
from .sessions import Check, Harness
from .suite import CHECKS, run_all

__all__ = [
    "ADVANCED_CHECKS",
    "CHECKS",
    "MEMORY_CHECKS",
    "Check",
    "ConformanceError",
    "DictStore",
    "Harness",
    "ManualClock",
    "MemoryCheck",
    "MemoryHarness",
    "Unsupported",
    "requires",
    "run_advanced_checks",
    "run_all",
    "run_memory_checks",
]
