"""The SQLAlchemy suite: our ``SQLAlchemySession`` vs the SDK's, with the raw driver as the floor.

Every run is one contender on one workload, on fresh tables (``s_<uuid8>``/``m_<uuid8>``) that
are created before timing starts and dropped afterwards; on SQLite, also on a fresh file in a
new temporary directory. Contenders:

- ``ours``: ``agent_sessions.SQLAlchemySession``, every session of a run on the engine that
  ``SQLAlchemySession.from_url`` made for the run's probe session (our pool sizing).
- ``sdk``: ``agents.extensions.memory.SQLAlchemySession``, likewise on the engine its own
  ``from_url`` made (``create_async_engine`` with SQLAlchemy's default pool). Both get the same
  ``--engine-kwargs``.
- ``raw``: the same SQL as our store on the bare driver (``raw_async.py``): ``asyncpg`` on
  PostgreSQL, ``aiosqlite`` on SQLite. There is none for other databases (MySQL/MariaDB).

Both session classes get ``create_tables=True``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import platform
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from agents.extensions.memory import SQLAlchemySession as SdkSQLAlchemySession
from raw_async import RawAiosqlite, RawAsyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from workloads import WORKLOADS, Result, history

import agent_sessions
from agent_sessions import SQLAlchemySession

__all__ = ["Target", "columns", "header", "run_workload"]

FILL_BATCH = 5_000
"""Rows per ``executemany`` when filling a growth history (not timed)."""


@dataclass
class Target:
    """The database every run of the suite goes to."""

    url: URL
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    tmp_root: str | None = None
    """SQLite only: where each run's temporary directory goes."""

    @classmethod
    def parse(cls, url: str, engine_kwargs: dict[str, Any], tmp_dir: str | None) -> Target:
        """Check the URL; for SQLite keep only the file name (each run gets a fresh directory)."""
        parsed = make_url(url)
        target = cls(parsed, engine_kwargs, tmp_dir)
        if target.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ValueError("SQLite needs a file URL, e.g. sqlite+aiosqlite:////tmp/bench.db")
            parent = Path(database).parent
            if tmp_dir is None and parent.is_absolute() and parent.is_dir():
                target.tmp_root = str(parent)
        return target

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def mysql(self) -> bool:
        return self.dialect in ("mysql", "mariadb")

    @property
    def raw(self) -> str | None:
        """The raw floor's driver, if this database has one."""
        return {"postgresql": "asyncpg", "sqlite": "aiosqlite"}.get(self.dialect)

    @property
    def contenders(self) -> list[str]:
        return ["ours", "sdk", "raw"] if self.raw else ["ours", "sdk"]

    def shown(self) -> str:
        return self.url.render_as_string(hide_password=True)


def columns(target: Target) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The table's contender columns and ratio columns for this target."""
    cols = {"ours": "ours", "sdk": "SDK"}
    ratios = [("ours/SDK", "ours", "sdk")]
    if target.raw:
        cols["raw"] = f"raw {target.raw}"
        ratios.append(("ours/raw", "ours", "raw"))
    return cols, ratios


@contextmanager
def _database(target: Target) -> Iterator[URL]:
    """The URL of one run: on SQLite a fresh file in a new directory, deleted afterwards."""
    if target.dialect != "sqlite":
        yield target.url
        return
    tmp = tempfile.mkdtemp(prefix="agent-sessions-bench-", dir=target.tmp_root)
    try:  # the -wal/-shm/-journal files go with the directory
        yield target.url.set(database=str(Path(tmp) / (Path(target.url.database or "").name)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Run:
    """One contender's run: its engine (or raw floor), fresh tables, setup and teardown."""

    def __init__(self, contender: str, target: Target, url: URL) -> None:
        self.contender = contender
        self.target = target
        self.url = url
        tag = uuid.uuid4().hex[:8]
        self.sessions_table, self.messages_table = f"s_{tag}", f"m_{tag}"
        # Setup and teardown (growth rows, DROP TABLE) go through an engine of their own.
        self.admin = create_async_engine(url, poolclass=NullPool)
        self.engine: AsyncEngine | None = None
        self.probe: SQLAlchemySession | None = None
        self.floor: RawAsyncpg | RawAiosqlite | None = None
        self.opened: list[Any] = []
        self.journal_mode: str | None = None

    def _tables(self) -> dict[str, Any]:
        return {
            "create_tables": True,
            "sessions_table": self.sessions_table,
            "messages_table": self.messages_table,
        }

    async def open(self) -> None:
        """Make the engine or floor and create the tables, untimed."""
        if self.contender == "raw":
            if self.target.dialect == "postgresql":
                dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
                self.floor = RawAsyncpg(dsn, self.sessions_table, self.messages_table)
            else:
                path = self.url.database or ""
                self.floor = RawAiosqlite(path, self.sessions_table, self.messages_table)
            await self.floor.open()
            return
        url = self.url.render_as_string(hide_password=False)
        kwargs = dict(self.target.engine_kwargs)
        if self.contender == "ours":
            # The engine (and pool) that our from_url makes; the probe owns it and disposes
            # of it when it is closed after the run.
            self.probe = SQLAlchemySession.from_url(
                "bench-probe", url=url, engine_kwargs=kwargs, **self._tables()
            )
            self.engine = self.probe.engine
            await self.probe.get_items()
            return
        sdk = SdkSQLAlchemySession.from_url("bench-probe", url=url, engine_kwargs=kwargs)
        self.engine = sdk.engine
        if self.target.mysql:
            # The SDK's DDL cannot compile on MySQL/MariaDB (VARCHAR without a length), so its
            # tables are made in our layout first; its create_all(checkfirst) then skips them.
            async with SQLAlchemySession("bench-probe", engine=self.engine, **self._tables()) as s:
                await s.get_items()
        probe = self.make("bench-probe", "")
        await probe.get_items()

    def make(self, session_id: str, db_path: str) -> Any:
        """The workloads' factory; ``db_path`` is unused (the run knows its database)."""
        del db_path
        if self.floor is not None:
            session = self.floor.session(session_id)
        elif self.contender == "ours":
            session = SQLAlchemySession(session_id, engine=self.engine, **self._tables())
        else:
            session = SdkSQLAlchemySession(session_id, engine=self.engine, **self._tables())
        self.opened.append(session)
        return session

    async def fill(self, db_path: str, session_id: str, first: int, count: int) -> None:
        """Append ``count`` rows to a session in bulk, in one transaction (growth setup)."""
        del db_path
        s, m = self.sessions_table, self.messages_table
        if self.target.mysql:
            touch = f"INSERT IGNORE INTO {s} (session_id) VALUES (:sid)"
        else:
            touch = f"INSERT INTO {s} (session_id) VALUES (:sid) ON CONFLICT DO NOTHING"
        if self.target.dialect == "postgresql":
            # A clock per row, as if every row came from its own add_items: the SDK orders by
            # created_at, and one transaction's CURRENT_TIMESTAMP would tie every row.
            insert = (
                f"INSERT INTO {m} (session_id, message_data, created_at) "
                "VALUES (:sid, :text, clock_timestamp())"
            )
        else:
            insert = f"INSERT INTO {m} (session_id, message_data) VALUES (:sid, :text)"
        rows = [
            {"sid": session_id, "text": json.dumps(item)} for item in history(count, first // 4)
        ]
        async with self.admin.begin() as conn:
            await conn.execute(text(touch), {"sid": session_id})
            for start in range(0, len(rows), FILL_BATCH):
                await conn.execute(text(insert), rows[start : start + FILL_BATCH])

    async def close(self) -> None:
        """Close every session, dispose of every engine, drop the tables."""
        try:
            for session in self.opened:
                if isinstance(session, SQLAlchemySession):
                    await session.close()  # never disposes an engine passed in
            if self.probe is not None:
                await self.probe.close()  # disposes of the engine its from_url made
            elif self.engine is not None:
                await self.engine.dispose()
            if self.floor is not None:
                await self.floor.close()
            await self._drop()
        finally:
            await self.admin.dispose()

    async def _drop(self) -> None:
        async with self.admin.begin() as conn:
            if self.target.dialect == "sqlite":
                self.journal_mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            await conn.execute(text(f"DROP TABLE IF EXISTS {self.messages_table}"))
            await conn.execute(text(f"DROP TABLE IF EXISTS {self.sessions_table}"))
        try:
            async with self.admin.begin() as conn:
                await conn.execute(
                    text("DELETE FROM agent_sessions_schema WHERE name = :name"),
                    {"name": self.messages_table},
                )
        except SQLAlchemyError:
            pass  # no schema-version table: nothing of ours was created there


async def _run_once(
    workload: str, contender: str, target: Target, params: dict[str, Any]
) -> tuple[Result, str | None]:
    with _database(target) as url:
        run = Run(contender, target, url)
        try:
            await run.open()
            extra = {"fill": run.fill} if workload == "growth" else {}
            result = await WORKLOADS[workload](run.make, str(url), **params, **extra)
        finally:
            await run.close()
        return result, run.journal_mode


def _error(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:300]}"


def run_workload(
    workload: str, repeat: int, params: dict[str, Any], target: Target, journal: dict[str, str]
) -> tuple[dict[str, list[Result]], dict[str, list[str]]]:
    """All repeats of one workload, interleaved across contenders; failed runs are recorded."""
    runs: dict[str, list[Result]] = {name: [] for name in target.contenders}
    errors: dict[str, list[str]] = {name: [] for name in target.contenders}
    for _ in range(repeat):
        for name in target.contenders:
            gc.collect()
            try:
                result, mode = asyncio.run(_run_once(workload, name, target, params))
            except Exception as exc:  # noqa: BLE001 - reported in the output, the suite goes on
                errors[name].append(_error(exc))
                continue
            runs[name].append(result)
            if mode:
                journal[name] = mode
    return runs, errors


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


async def _server_version(target: Target) -> str:
    query = {
        "postgresql": "SHOW server_version",
        "sqlite": "SELECT sqlite_version()",
    }.get(target.dialect, "SELECT VERSION()")
    with _database(target) as url:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql(query)).scalar())
        finally:
            await engine.dispose()


def header(target: Target, repeat: int, quick: bool) -> dict[str, Any]:
    """What the numbers were measured on (the URL without its password)."""
    driver = target.url.get_driver_name()
    try:
        server = asyncio.run(_server_version(target))
    except (OSError, SQLAlchemyError) as exc:
        raise ValueError(f"cannot use {target.shown()}: {_error(exc)}") from exc
    meta: dict[str, Any] = {
        "backend": f"sqlalchemy ({target.dialect})",
        "url": target.shown(),
        "server": server,
        "python": platform.python_version(),
        "sqlalchemy": _version("sqlalchemy"),
        driver: _version(driver),
    }
    if target.raw and target.raw != driver:
        meta[target.raw] = _version(target.raw)
    if target.dialect == "sqlite":
        meta["tmp_dir"] = target.tmp_root or tempfile.gettempdir()
    meta |= {
        "engine_kwargs": json.dumps(target.engine_kwargs),
        "agent_sessions": agent_sessions.__version__,
        "openai_agents": _version("openai-agents"),
        "platform": platform.platform(),
        "repeat": repeat,
        "quick": quick,
    }
    return meta
