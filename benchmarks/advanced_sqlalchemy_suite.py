"""The advanced suite on a URL: ``AdvancedSQLAlchemySession`` beside the SDK's SQLite class.

The SDK has branches, turns and usage only in ``agents.extensions.memory.AdvancedSQLiteSession``,
so that is the baseline there is; our plain ``SQLAlchemySession`` on the same URL shows what the
branch bookkeeping costs on that database. Contenders:

- ``ours``: ``agent_sessions.AdvancedSQLAlchemySession``, every session of a run on the engine
  ``AdvancedSQLAlchemySession.from_url`` made for the run's probe session (our pool sizing).
- ``plain``: ``agent_sessions.SQLAlchemySession`` on the same URL, likewise on its own
  ``from_url`` engine. It has no branches: it sits out the ``branch`` workload.
- ``sdk``: ``agents.extensions.memory.AdvancedSQLiteSession`` on a fresh SQLite file (under
  ``--tmp-dir`` if given), as in ``--backend advanced``.

Every run of ours and plain gets fresh tables (``s_<uuid8>``/``m_<uuid8>``), created before timing
by an untimed ``get_items()`` of the probe session and dropped afterwards with the branch tables
(on SQLite, a fresh file in a new temporary directory instead). Runs are interleaved (ours,
plain, sdk, ours, ...), one ``asyncio.run`` each, as in the other suites.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agents.extensions.memory import AdvancedSQLiteSession as SdkAdvancedSQLiteSession
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy_suite import Target, _database, _error
from workloads import ADVANCED_WORKLOADS, Result

from agent_sessions import AdvancedSQLAlchemySession, SQLAlchemySession
from agent_sessions.backends.advanced.sql import AdvancedStatements
from agent_sessions.schema import VERSION_TABLE, TableNames

__all__ = ["COLUMNS", "CONTENDERS", "RATIOS", "drop_tables", "run_workload"]

CONTENDERS = ("ours", "plain", "sdk")
COLUMNS = {"ours": "ours, advanced", "plain": "ours, plain", "sdk": "SDK advanced, SQLite"}
RATIOS = [("ours/SDK", "ours", "sdk"), ("ours/plain", "ours", "plain")]
SITS_OUT = {"plain": {"branch"}}
"""Workloads a contender cannot run (plain sessions have no branches)."""


async def drop_tables(url: URL, sessions: str, messages: str) -> None:
    """Drop a pair of tables with its branch and side tables and version rows (children first)."""
    statements = AdvancedStatements(TableNames(sessions, messages))
    branch_tables = statements.names(shared=False)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            # state and archive: the side tables every store of ours makes beside its pair.
            side = (f"{messages}_state", f"{messages}_archive")
            for table in (*branch_tables, *side, messages, sessions):
                await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(f"DELETE FROM {VERSION_TABLE} WHERE name IN (:name, :advanced)"),
                    {"name": messages, "advanced": statements.version_name},
                )
        except SQLAlchemyError:
            pass  # no version table: nothing of ours was created there
    finally:
        await engine.dispose()


class Run:
    """One contender's run: its probe session (and engine) or SQLite directory, and teardown."""

    def __init__(self, contender: str, target: Target, url: URL) -> None:
        self.contender = contender
        self.target = target
        self.url = url
        tag = uuid.uuid4().hex[:8]
        self.tables = {"sessions_table": f"s_{tag}", "messages_table": f"m_{tag}"}
        self.probe: Any = None
        self.opened: list[Any] = []
        self.tmp: str | None = None

    async def open(self) -> None:
        """Create the tables (ours, plain) or the SQLite directory (sdk), untimed."""
        if self.contender == "sdk":
            self.tmp = tempfile.mkdtemp(prefix="agent-sessions-bench-", dir=self.target.tmp_root)
            return
        cls = AdvancedSQLAlchemySession if self.contender == "ours" else SQLAlchemySession
        self.probe = cls.from_url(
            "bench-probe",
            url=self.url.render_as_string(hide_password=False),
            engine_kwargs=dict(self.target.engine_kwargs),
            create_tables=True,
            **self.tables,
        )
        await self.probe.get_items()

    def make(self, session_id: str, db_path: str) -> Any:
        """The workloads' factory; ``db_path`` is unused (the run knows its database)."""
        del db_path
        if self.contender == "sdk":
            path = str(Path(self.tmp or "") / "bench.db")
            session: Any = SdkAdvancedSQLiteSession(
                session_id=session_id, db_path=path, create_tables=True
            )
        elif self.contender == "ours":
            session = AdvancedSQLAlchemySession(session_id, engine=self.probe.engine, **self.tables)
        else:
            session = SQLAlchemySession(session_id, engine=self.probe.engine, **self.tables)
        self.opened.append(session)
        return session

    async def close(self) -> None:
        """Close every session, dispose of the engine, drop the tables or the directory."""
        try:
            for session in self.opened:
                closed = session.close()  # ours is awaitable, the SDK's closes at once
                if inspect.isawaitable(closed):
                    await closed
            if self.probe is not None:
                await self.probe.close()  # disposes of the engine its from_url made
                if self.target.dialect != "sqlite":
                    await drop_tables(self.url, *self.tables.values())
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)


async def _run_once(
    workload: str, contender: str, target: Target, params: dict[str, Any]
) -> Result:
    with _database(target) as url:
        run = Run(contender, target, url)
        try:
            await run.open()
            return await ADVANCED_WORKLOADS[workload](run.make, str(url), **params)
        finally:
            await run.close()


def run_workload(
    workload: str, repeat: int, params: dict[str, Any], target: Target
) -> tuple[dict[str, list[Result]], dict[str, list[str]]]:
    """All repeats of one workload, interleaved across contenders; failed runs are recorded.

    A contender that cannot run the workload is left out of both dicts.
    """
    names = [name for name in CONTENDERS if workload not in SITS_OUT.get(name, ())]
    runs: dict[str, list[Result]] = {name: [] for name in names}
    errors: dict[str, list[str]] = {name: [] for name in names}
    for _ in range(repeat):
        for name in names:
            gc.collect()
            try:
                runs[name].append(asyncio.run(_run_once(workload, name, target, params)))
            except Exception as exc:  # noqa: BLE001 - reported in the output, the suite goes on
                errors[name].append(_error(exc))
    return runs, errors
