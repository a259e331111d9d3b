"""What every SQLAlchemy store of one engine shares: its statements and which tables are ready.

The state lives on the engine object itself (its sync engine), so it goes when the engine goes,
and another engine, even on the same URL, starts with none: its schema is checked again. No
module keeps a registry of engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ..schema import TableNames
from ._sqlalchemy_schema import SessionTables
from ._sqlalchemy_sql import Statements

__all__ = ["EngineState", "engine_state"]

_ATTRIBUTE = "_agent_sessions_state"
"""The attribute of the sync engine that holds its :class:`EngineState`."""


class EngineState:
    """The shared state of one engine: built statements, and the table pairs known to exist.

    Statements are built (and compiled by SQLAlchemy) once per pair of table names, not once
    per session object. A pair is marked ready once its schema was created or checked; a call
    that then finds a table missing (someone dropped it) unmarks it, so the next check runs.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.dialect = engine.dialect.name
        self.where = engine.url.render_as_string(hide_password=True)
        self.ready: set[Hashable] = set()
        """The table pairs (or an advanced store's key) whose schema was created or checked."""
        self.provenance: dict[TableNames, bool] = {}
        """Whether a pair's messages table has the provenance columns (schema v4), once looked."""
        self._built: dict[TableNames, tuple[SessionTables, Statements]] = {}
        self._locks: dict[TableNames, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        self._autocommit: AsyncEngine | None = None

    def statements(self, names: TableNames) -> tuple[SessionTables, Statements]:
        """The tables and statements of one pair of names, built on first use."""
        built = self._built.get(names)
        if built is None:
            tables = SessionTables(names)
            built = self._built[names] = (tables, Statements(tables, self.dialect))
        return built

    def schema_lock(self, names: TableNames) -> asyncio.Lock:
        """The lock the first callers of a pair queue on, one per event loop."""
        loop = asyncio.get_running_loop()
        held = self._locks.get(names)
        if held is None or held[0] is not loop:
            held = self._locks[names] = (loop, asyncio.Lock())
        return held[1]

    def autocommit(self, engine: AsyncEngine) -> AsyncEngine:
        """The engine in autocommit mode (one option engine shared by every store)."""
        if self._autocommit is None:
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._autocommit


def engine_state(engine: AsyncEngine) -> EngineState:
    """The :class:`EngineState` of ``engine``, made on first use."""
    sync: Any = engine.sync_engine
    state: EngineState | None = getattr(sync, _ATTRIBUTE, None)
    if state is None:
        state = EngineState(engine)
        setattr(sync, _ATTRIBUTE, state)
    return state
