"""The memory checks catch broken stores: each sabotaged backend fails the check aimed at it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent_sessions.memory import IndexConfig, MemoryStore
from agent_sessions.memory.sqlite import SQLiteMemoryBackend
from agent_sessions.memory.types import Hint, Record, Row
from agent_sessions.testing import (
    MEMORY_CHECKS,
    ConformanceError,
    MemoryCheck,
    MemoryHarness,
    run_memory_checks,
)


class LeakyBackend(SQLiteMemoryBackend):
    """Ignores the namespace prefix of every scan: one user sees everyone's memories."""

    async def scan(
        self,
        prefix: str,
        now: float,
        *,
        limit: int | None,
        offset: int,
        vectors: bool,
        hints: Sequence[Hint] = (),
    ) -> list[Row]:
        """Scan everything, whatever the prefix."""
        return await super().scan("", now, limit=limit, offset=offset, vectors=vectors, hints=hints)


class ImmortalBackend(SQLiteMemoryBackend):
    """Reads as if no time had passed: expired memories keep coming back."""

    async def get(self, namespace: str, key: str, now: float) -> Row | None:
        """Read at the epoch."""
        return await super().get(namespace, key, 0.0)

    async def scan(
        self,
        prefix: str,
        now: float,
        *,
        limit: int | None,
        offset: int,
        vectors: bool,
        hints: Sequence[Hint] = (),
    ) -> list[Row]:
        """Scan at the epoch."""
        return await super().scan(
            prefix, 0.0, limit=limit, offset=offset, vectors=vectors, hints=hints
        )


class ForgetfulBackend(SQLiteMemoryBackend):
    """Resets created_at on every write, as a plain INSERT OR REPLACE would."""

    async def put(self, record: Record) -> None:
        """Delete, then insert."""
        await super().delete(record.namespace, record.key)
        await super().put(record)


class UnrankedBackend(SQLiteMemoryBackend):
    """Returns vector matches in storage order instead of by similarity."""

    async def nearest(
        self, prefix: str, query: Sequence[float], now: float, k: int, dims: int
    ) -> list[tuple[int, float]]:
        """Return matches by row id."""
        found = await super().nearest(prefix, query, now, 1000, dims)
        return sorted(found)[:k]


def harness(tmp_path: Path, backend: type[SQLiteMemoryBackend]) -> MemoryHarness:
    """A harness whose stores run on ``backend`` over one file."""
    path = tmp_path / "sabotaged.db"

    def open_store(index: IndexConfig | None, clock: Callable[[], float]) -> MemoryStore:
        return MemoryStore(index=index, clock=clock, backend=backend(path, "agent_memories"))

    return MemoryHarness(backend.__name__, open_store)


def check(name: str) -> MemoryCheck:
    """The memory check called ``name``."""
    (found,) = [c for c in MEMORY_CHECKS if c.__name__ == name]
    return found


@pytest.mark.parametrize(
    ("backend", "check_name"),
    [
        (LeakyBackend, "check_namespace_isolation"),
        (ImmortalBackend, "check_ttl_expiry_and_sweep"),
        (ImmortalBackend, "check_ttl_refresh"),
        (ForgetfulBackend, "check_overwrite_keeps_creation"),
        (UnrankedBackend, "check_semantic_search"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
async def test_sabotaged_backend_fails_its_check(
    tmp_path: Path, backend: type[SQLiteMemoryBackend], check_name: str
) -> None:
    """Raises ConformanceError when the backend breaks the promise the check is about."""
    h = harness(tmp_path, backend)
    try:
        with pytest.raises(ConformanceError):
            await check(check_name)(h)
    finally:
        await h.close_all()


async def test_run_memory_checks_passes_a_sound_store(tmp_path: Path) -> None:
    """Reports no failure for any check on the plain SQLite backend."""
    outcome = await run_memory_checks(harness(tmp_path, SQLiteMemoryBackend))
    assert outcome == dict.fromkeys(outcome)
    assert len(outcome) == len(MEMORY_CHECKS)


async def test_run_memory_checks_reports_failures_by_name(tmp_path: Path) -> None:
    """Maps a failing check to its ConformanceError instead of stopping the run."""
    outcome = await run_memory_checks(harness(tmp_path, LeakyBackend))
    assert isinstance(outcome["check_namespace_isolation"], ConformanceError)
    assert outcome["check_put_get"] is None
