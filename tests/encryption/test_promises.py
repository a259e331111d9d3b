"""EncryptedSession keeps issue 14's promises: SDK interop, delegation, key safety, strict decoding.

Every test runs on real SQLite files (and, where the backend matters, on PostgreSQL through
SQLAlchemy), and the SDK's own ``EncryptedSession`` is used on the same file where interop is
claimed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import sqlite3
import stat
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import agents
import pytest
from agents import Agent, RunConfig, Runner
from agents.extensions.memory import EncryptedSession as SDKEncryptedSession
from agents.extensions.memory import encrypt_session
from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession
from agents.memory.session import is_openai_responses_compaction_aware_session
from agents.testing import ModelStep, ScriptedModel
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import (
    DecryptionError,
    EncryptedSession,
    MemoryKeyStore,
    SQLAlchemySession,
    SQLiteKeyStore,
    SQLiteSession,
    UnknownKeyError,
)
from agent_sessions.encryption.crypto import parse_master_key
from tests.conftest import write_raw_sqlite
from tests.encryption_kit import Clock, new_key, raw_rows
from tests.sql_servers import database_url, drop_tables, unique_tables

Item = TResponseInputItem


def msg(text: str) -> Item:
    """Return a user message item."""
    return {"role": "user", "content": text}


def ours(
    path: Path, key: str | list[str], session_id: str = "s", **options: Any
) -> EncryptedSession:
    """Return our EncryptedSession over our SQLiteSession on ``path``."""
    return EncryptedSession(session_id, SQLiteSession(session_id, path), key, **options)


def sdk(path: Path, key: str, session_id: str = "s", ttl: int = 600) -> SDKEncryptedSession:
    """Return the SDK's EncryptedSession over the SDK's SQLiteSession on ``path``."""
    return SDKEncryptedSession(session_id, agents.SQLiteSession(session_id, path), key, ttl=ttl)


def close_sdk(session: SDKEncryptedSession) -> None:
    """Close the SDK session under an SDK EncryptedSession."""
    cast(agents.SQLiteSession, session.underlying_session).close()


@pytest.fixture
def key() -> str:
    """A fresh Fernet master key."""
    return new_key()


class _ClockedFernet:
    """A Fernet that stamps and checks tokens at a set time (cryptography 49+ is in Rust)."""

    def __init__(self, fernet: Fernet, now: list[float]) -> None:
        self._fernet, self._now = fernet, now

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt_at_time(data, int(self._now[0]))

    def decrypt(self, token: bytes | str, ttl: int | None = None) -> bytes:
        if ttl is None:
            return self._fernet.decrypt(token)
        return self._fernet.decrypt_at_time(token, ttl, int(self._now[0]))

    def extract_timestamp(self, token: bytes | str) -> int:
        return self._fernet.extract_timestamp(token)


@pytest.fixture
def fernet_time(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set the time the SDK's EncryptedSession stamps its Fernet tokens with."""
    now = [1_700_000_000.0]
    derive = encrypt_session._derive_session_fernet_key  # noqa: SLF001 - the SDK takes no clock
    monkeypatch.setattr(
        encrypt_session,
        "_derive_session_fernet_key",
        lambda master, session_id: _ClockedFernet(derive(master, session_id), now),
    )

    def set_time(value: float) -> None:
        now[0] = value

    return set_time


HISTORY: list[Item] = [msg("hello"), {"role": "assistant", "content": "hi"}, msg("how are you?")]


# 1. Switching from and to the SDK's EncryptedSession ----------------------------------------


@pytest.mark.sqlite
async def test_rows_the_sdks_class_wrote_read_back_with_ours(tmp_path: Path, key: str) -> None:
    """History the SDK's EncryptedSession wrote is read, limited and popped by ours, same key."""
    path = tmp_path / "switch.db"
    theirs = sdk(path, key)
    await theirs.add_items(HISTORY)
    close_sdk(theirs)
    async with ours(path, key, strict=True) as session:
        assert await session.get_items() == HISTORY
        assert await session.get_items(limit=1) == HISTORY[-1:]
        assert await session.pop_item() == HISTORY[-1]
        await session.add_items([msg("next")])
        assert await session.get_items() == [*HISTORY[:2], msg("next")]


@pytest.mark.sqlite
async def test_sdk_rows_expire_after_the_ttl_as_the_sdk_decides(
    tmp_path: Path, key: str, fernet_time: Callable[[float], None]
) -> None:
    """An SDK row stamped t is read at t + ttl and left out (kept stored) after it."""
    path = tmp_path / "ttl.db"
    fernet_time(1_700_000_000)
    theirs = sdk(path, key, ttl=100)
    await theirs.add_items([msg("old")])
    close_sdk(theirs)
    clock = Clock(1_700_000_100)
    async with ours(path, key, ttl=100, clock=clock) as session:
        assert await session.get_items() == [msg("old")]
        clock.now = 1_700_000_101
        assert await session.get_items() == []
        assert await session.pop_item() is None
    assert len(raw_rows(path)) == 1


@pytest.mark.sqlite
async def test_sdk_row_stamped_in_the_future_is_refused(
    tmp_path: Path, key: str, fernet_time: Callable[[float], None]
) -> None:
    """An SDK token stamped more than Fernet's clock skew ahead fails, as the SDK's read does."""
    path = tmp_path / "future.db"
    fernet_time(1_700_000_000 + 61)
    theirs = sdk(path, key)
    await theirs.add_items([msg("from the future")])
    close_sdk(theirs)
    async with ours(path, key, strict=True, clock=Clock(1_700_000_000)) as session:
        with pytest.raises(DecryptionError, match="ahead of this machine's clock"):
            await session.get_items()


@pytest.mark.sqlite
async def test_sdk_row_under_another_key_or_session_is_not_returned(
    tmp_path: Path, key: str
) -> None:
    """An SDK row is authenticated: a wrong key, or a row copied from another session, fails."""
    path = tmp_path / "auth.db"
    theirs = sdk(path, key, session_id="other")
    await theirs.add_items([msg("other's")])
    close_sdk(theirs)
    write_raw_sqlite(path, "s", raw_rows(path, "other")[0][1])
    async with ours(path, key, strict=True) as session:
        with pytest.raises(UnknownKeyError):
            await session.get_items()
    async with ours(path, new_key(), session_id="other", strict=True) as wrong:
        with pytest.raises(UnknownKeyError):
            await wrong.get_items()


@pytest.mark.sqlite
async def test_reencrypt_moves_sdk_rows_to_our_format_in_place(tmp_path: Path, key: str) -> None:
    """reencrypt() rewrites every SDK row as our envelope, same order, same items."""
    path = tmp_path / "migrate.db"
    theirs = sdk(path, key)
    await theirs.add_items(HISTORY)
    close_sdk(theirs)
    ids = [row_id for row_id, _ in raw_rows(path)]
    async with ours(path, key) as session:
        assert await session.reencrypt() == len(HISTORY)
        assert await session.reencrypt() == 0
        assert await session.get_items() == HISTORY
    assert [row_id for row_id, _ in raw_rows(path)] == ids
    assert {json.loads(text)["__enc__"] for _, text in raw_rows(path)} == {"as1"}


@pytest.mark.sqlite
async def test_format_sdk_writes_what_the_sdks_class_reads(tmp_path: Path, key: str) -> None:
    """With format='sdk', the SDK's EncryptedSession reads our history and pops it."""
    path = tmp_path / "back.db"
    async with ours(path, key, format="sdk") as session:
        await session.add_items(HISTORY)
        assert await session.get_items() == HISTORY
    theirs = sdk(path, key)
    try:
        assert await theirs.get_items() == HISTORY
        assert await theirs.pop_item() == HISTORY[-1]
    finally:
        close_sdk(theirs)


@pytest.mark.sqlite
async def test_native_rows_are_moved_for_the_sdk_by_reencrypt_in_sdk_format(
    tmp_path: Path, key: str
) -> None:
    """A native history becomes readable by the SDK after reencrypt() with format='sdk'."""
    path = tmp_path / "tosdk.db"
    async with ours(path, key) as session:
        await session.add_items(HISTORY)
    async with ours(path, key, format="sdk") as session:
        assert await session.reencrypt() == len(HISTORY)
    theirs = sdk(path, key)
    try:
        assert await theirs.get_items() == HISTORY
    finally:
        close_sdk(theirs)


def test_format_sdk_with_a_key_store_is_refused(tmp_path: Path, key: str) -> None:
    """format='sdk' cannot use a key store (the SDK has no data keys): ValueError up front."""
    underlying = SQLiteSession("s", tmp_path / "x.db")
    try:
        with pytest.raises(ValueError, match="key_store"):
            EncryptedSession("s", underlying, key, format="sdk", key_store=MemoryKeyStore())
        with pytest.raises(ValueError, match="format"):
            EncryptedSession("s", underlying, key, format=cast(Any, "fernet"))
    finally:
        underlying.close()


@pytest.fixture
async def pg_engine(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str, str]]:
    """A PostgreSQL engine and fresh table names, dropped afterwards."""
    engine = create_async_engine(database_url("postgres", tmp_path))
    sessions, messages = unique_tables()
    try:
        yield engine, sessions, messages
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


@pytest.mark.postgres
async def test_switch_both_ways_over_sqlalchemy_on_postgresql(
    pg_engine: tuple[AsyncEngine, str, str], key: str
) -> None:
    """On PostgreSQL, ours reads what the SDK's classes wrote, and the SDK reads format='sdk'."""
    from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession

    engine, sessions, messages = pg_engine
    tables: dict[str, Any] = {"sessions_table": sessions, "messages_table": messages}
    theirs = SDKEncryptedSession(
        "pg-s", SDKSQLAlchemySession("pg-s", engine=engine, create_tables=True, **tables), key
    )
    await theirs.add_items(HISTORY[:2])
    mine = EncryptedSession(
        "pg-s", SQLAlchemySession("pg-s", engine=engine, **tables), key, format="sdk"
    )
    assert await mine.get_items() == HISTORY[:2]
    await mine.add_items(HISTORY[2:])
    assert await theirs.get_items() == HISTORY
    assert await mine.pop_item() == HISTORY[-1]
    await mine.aclose()


# 2. Delegation -------------------------------------------------------------------------------


class CountingSession(SQLiteSession):
    """Our SQLiteSession with get_items and pop_item overridden, counting the calls."""

    calls: list[str]

    async def get_items(self, limit: int | None = None) -> list[Item]:
        """Count, then read."""
        self.calls.append("get_items")
        return await super().get_items(limit)

    async def pop_item(self) -> Item | None:
        """Count, then pop."""
        self.calls.append("pop_item")
        return await super().pop_item()

    def get_stats(self) -> dict[str, int]:
        """A method only the underlying session has."""
        return {"calls": len(self.calls)}


@pytest.mark.sqlite
async def test_overridden_methods_of_the_underlying_session_are_called(
    tmp_path: Path, key: str
) -> None:
    """A subclass's get_items and pop_item are what the wrapper calls; items still round-trip."""
    underlying = CountingSession("s", tmp_path / "c.db")
    underlying.calls = []
    async with EncryptedSession("s", underlying, key) as session:
        await session.add_items(HISTORY)
        assert await session.get_items() == HISTORY
        assert await session.pop_item() == HISTORY[-1]
        assert "get_items" in underlying.calls
        assert "pop_item" in underlying.calls


@pytest.mark.sqlite
async def test_unknown_public_attributes_are_forwarded_private_ones_are_not(
    tmp_path: Path, key: str
) -> None:
    """get_stats and db_path come from the underlying session; private and dunder names do not."""
    underlying = CountingSession("s", tmp_path / "f.db")
    underlying.calls = []
    session = EncryptedSession("s", underlying, key)
    try:
        assert session.get_stats() == {"calls": 0}
        assert session.db_path == underlying.db_path
        private = "_sqlite"  # the underlying session has it; the wrapper must not lend it
        assert hasattr(underlying, private)
        assert not hasattr(session, private)
        with pytest.raises(AttributeError):
            _ = session.no_such_attribute
        assert not hasattr(session, "__deepcopy_hook__")
        assert not is_openai_responses_compaction_aware_session(session)
    finally:
        await session.aclose()


@pytest.mark.sqlite
async def test_forwarding_never_recurses_while_uninitialised_or_copied(
    tmp_path: Path, key: str
) -> None:
    """An instance without state answers AttributeError, and copy.copy works without recursion."""
    blank = EncryptedSession.__new__(EncryptedSession)
    with pytest.raises(AttributeError):
        _ = blank.get_stats
    session = ours(tmp_path / "copy.db", key)
    try:
        clone = copy.copy(session)
        assert clone.session_id == "s"
    finally:
        await session.aclose()


@pytest.mark.sqlite
async def test_branch_methods_of_the_sdks_advanced_session_are_reachable(
    tmp_path: Path, key: str
) -> None:
    """Over the SDK's AdvancedSQLiteSession, its turn and branch methods work through ours."""
    from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvanced

    advanced = SDKAdvanced(session_id="s", db_path=tmp_path / "adv.db", create_tables=True)
    session = EncryptedSession("s", advanced, key)
    try:
        await session.add_items(HISTORY)
        assert [b["branch_id"] for b in await session.list_branches()] == ["main"]
        assert await session.get_conversation_turns() == await advanced.get_conversation_turns()
        assert await session.get_items() == HISTORY
    finally:
        advanced.close()


class WrapperSession:
    """A foreign session whose methods accept ``wrapper=``; it records what it was given."""

    session_settings = None

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.items: list[Item] = []
        self.wrappers: list[object] = []

    async def get_items(self, limit: int | None = None, *, wrapper: object = None) -> list[Item]:
        """Return the items, recording the wrapper."""
        self.wrappers.append(wrapper)
        return list(self.items if limit is None else self.items[-limit:] if limit else [])

    async def add_items(self, items: list[Item], *, wrapper: object = None) -> None:
        """Append, recording the wrapper."""
        self.wrappers.append(wrapper)
        self.items.extend(items)

    async def pop_item(self, *, wrapper: object = None) -> Item | None:
        """Pop, recording the wrapper."""
        self.wrappers.append(wrapper)
        return self.items.pop() if self.items else None

    async def clear_session(self, *, wrapper: object = None) -> None:
        """Clear, recording the wrapper."""
        self.wrappers.append(wrapper)
        self.items.clear()


async def test_wrapper_keyword_is_accepted_and_forwarded(key: str) -> None:
    """Every protocol method takes wrapper=, and passes it to an underlying session that does."""
    underlying = WrapperSession("s")
    session = EncryptedSession("s", underlying, key)  # type: ignore[arg-type]
    marker = object()
    await session.add_items([msg("a")], wrapper=marker)  # type: ignore[arg-type]
    assert await session.get_items(wrapper=marker) == [msg("a")]  # type: ignore[arg-type]
    assert await session.pop_item(wrapper=marker) == msg("a")  # type: ignore[arg-type]
    await session.clear_session(wrapper=marker)  # type: ignore[arg-type]
    assert underlying.wrappers
    assert all(w is marker for w in underlying.wrappers)


@pytest.mark.sqlite
async def test_wrapper_keyword_is_accepted_over_our_session(tmp_path: Path, key: str) -> None:
    """Over our own session (which takes no wrapper) the keyword is accepted and not passed on."""
    async with ours(tmp_path / "w.db", key) as session:
        await session.add_items([msg("a")], wrapper=None)
        assert await session.get_items(wrapper=None) == [msg("a")]


class FakeResponses:
    """The ``responses.compact`` endpoint of an OpenAI client, answering one fixed summary."""

    def __init__(self, output: list[dict[str, Any]]) -> None:
        self.output = output
        self.calls: list[dict[str, Any]] = []

    async def compact(self, **kwargs: Any) -> SimpleNamespace:
        """Record the request and answer the summary."""
        self.calls.append(kwargs)
        return SimpleNamespace(output=self.output, usage=None)


SUMMARY = {"type": "compaction", "id": "cmp-1", "encrypted_content": "summary"}


def compacting(path: Path, key: str, responses: FakeResponses) -> tuple[EncryptedSession, Any]:
    """Return ours over OpenAIResponsesCompactionSession over the SDK's SQLiteSession."""
    backend = agents.SQLiteSession("s", path)
    compaction = OpenAIResponsesCompactionSession(
        "s",
        backend,
        client=cast(Any, SimpleNamespace(responses=responses)),
        compaction_mode="input",
        should_trigger_compaction=lambda _: True,
    )
    return EncryptedSession("s", compaction, key), backend


@pytest.mark.sqlite
async def test_run_compaction_compacts_the_decrypted_history_and_stores_it_encrypted(
    tmp_path: Path, key: str
) -> None:
    """run_compaction sends plaintext to the API, and stores only the encrypted summary."""
    responses = FakeResponses([SUMMARY])
    session, backend = compacting(tmp_path / "cmp.db", key, responses)
    try:
        await session.add_items(HISTORY)
        assert is_openai_responses_compaction_aware_session(session)
        await session.run_compaction({"force": True})
        assert responses.calls == [{"model": "gpt-4.1", "input": HISTORY}]
        assert await session.get_items() == [SUMMARY]
        stored = await backend.get_items()
        assert len(stored) == 1
        assert cast(dict[str, Any], stored[0])["__enc__"] == "as1"
    finally:
        backend.close()


@pytest.mark.sqlite
async def test_runner_compacts_through_ours(tmp_path: Path, key: str) -> None:
    """Runner.run over ours over a compaction session compacts after the turn."""
    responses = FakeResponses([SUMMARY])
    session, backend = compacting(tmp_path / "run.db", key, responses)
    model = ScriptedModel(
        [ModelStep(output=[agents.testing.assistant_message("answer")], response_id="r1")]
    )
    try:
        await Runner.run(
            Agent(name="a", model=model),
            "hello",
            session=session,
            run_config=RunConfig(tracing_disabled=True),
        )
        assert len(responses.calls) == 1
        assert responses.calls[0]["input"][0] == msg("hello")
        assert await session.get_items() == [SUMMARY]
    finally:
        backend.close()


@pytest.mark.sqlite
async def test_manual_compaction_refuses_to_delete_unreadable_rows(
    tmp_path: Path, key: str
) -> None:
    """A manual run_compaction over a row it cannot read raises, and keeps every row."""
    responses = FakeResponses([SUMMARY])
    path = tmp_path / "keep.db"
    session, backend = compacting(path, key, responses)
    try:
        await session.add_items(HISTORY)
        await backend.add_items([msg("plaintext, unreadable")])
        with pytest.raises(DecryptionError, match="cannot be read"):
            await session.run_compaction({"force": True})
        assert responses.calls == []
        assert len(await backend.get_items()) == len(HISTORY) + 1
    finally:
        backend.close()


# 3. A wrong key's pop ------------------------------------------------------------------------


@pytest.mark.sqlite
async def test_wrong_key_pop_of_sdk_rows_removes_nothing(tmp_path: Path, key: str) -> None:
    """Over SDK rows, a wrong-key pop returns None (lenient) or raises (strict); none removed."""
    path = tmp_path / "pop.db"
    theirs = sdk(path, key)
    await theirs.add_items(HISTORY)
    close_sdk(theirs)
    wrong = new_key()
    async with ours(path, wrong) as lenient:
        assert await lenient.pop_item() is None
    async with ours(path, wrong, strict=True) as strict:
        with pytest.raises(DecryptionError):
            await strict.pop_item()
    assert len(raw_rows(path)) == len(HISTORY)


@pytest.mark.postgres
async def test_wrong_key_pop_over_postgresql_removes_nothing(
    pg_engine: tuple[AsyncEngine, str, str], key: str
) -> None:
    """On PostgreSQL a wrong-key pop returns None or raises strict, and every row stays."""
    engine, sessions, messages = pg_engine
    tables: dict[str, Any] = {"sessions_table": sessions, "messages_table": messages}
    right = EncryptedSession(
        "pg-p", SQLAlchemySession("pg-p", engine=engine, create_tables=True, **tables), key
    )
    await right.add_items(HISTORY)
    for strict in (False, True):
        wrong = EncryptedSession(
            "pg-p", SQLAlchemySession("pg-p", engine=engine, **tables), new_key(), strict=strict
        )
        if strict:
            with pytest.raises(DecryptionError):
                await wrong.pop_item()
        else:
            assert await wrong.pop_item() is None
    assert await right.get_items() == HISTORY


# 4. Session ids ------------------------------------------------------------------------------


@pytest.mark.sqlite
def test_session_id_mismatch_is_refused(tmp_path: Path, key: str) -> None:
    """EncryptedSession('alice', SQLiteSession('bob', ...)) raises ValueError naming both ids."""
    mine, theirs = SQLiteSession("bob", tmp_path / "ids.db"), agents.SQLiteSession("bob")
    try:
        for underlying in (mine, theirs):
            with pytest.raises(ValueError, match=r"'alice'.*'bob'"):
                EncryptedSession("alice", underlying, key)
    finally:
        mine.close()
        theirs.close()


# 5. Secrets stay out of reprs and tracebacks -------------------------------------------------


def formatted(exc: BaseException) -> str:
    """Format ``exc`` (and its chain) with the locals of every frame but this test file's own."""
    shown: traceback.TracebackException | None = traceback.TracebackException.from_exception(
        exc, capture_locals=True
    )
    parts: list[str] = []
    while shown is not None:
        parts.append("".join(shown.format_exception_only()))
        parts.extend(f"{f.name} {f.locals}" for f in shown.stack if f.filename != __file__)
        shown = shown.__cause__ or shown.__context__
    return "\n".join(parts)


def secret_forms(raw: bytes) -> list[str]:
    """Every form of a secret's bytes that must not be printed."""
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return [
        urlsafe,
        urlsafe[:16],
        repr(raw)[:20],
        raw.hex()[:16],
        base64.b64encode(raw).decode()[:16],
    ]


@pytest.mark.sqlite
async def test_no_key_material_in_reprs_or_locals_of_tracebacks(tmp_path: Path, key: str) -> None:
    """repr/str of every key-holding object, and tracebacks with locals, never show the key."""
    store = SQLiteKeyStore(tmp_path / "keys.db")
    session = ours(tmp_path / "r.db", key, key_store=store, strict=True)
    await session.add_items([msg("a")])
    master = parse_master_key(key)
    # The internals are what holds key material; each must print redacted.
    codec = session._codec  # noqa: SLF001
    data_ring = codec.cipher.ring
    objects: list[object] = [
        session,
        master,
        session._masters,  # noqa: SLF001
        data_ring,
        codec,
        codec.cipher,
        store,
        MemoryKeyStore(),
        session._derived,  # noqa: SLF001
    ]
    texts = [repr(obj) for obj in objects] + [str(obj) for obj in objects]
    write_raw_sqlite(tmp_path / "r.db", "s", '{"__enc__":"as1","kid":"x","ts":1,"ct":"AAAA"}')
    for attempt in (session.get_items(), session.add_items([cast(Item, {"bad": object()})])):
        try:
            await attempt
        except Exception as exc:  # noqa: BLE001 - any error: its traceback is what is checked
            texts.append(formatted(exc))
    spare = SQLiteSession("s", tmp_path / "r.db")
    for bad in ({"ttl": -1}, {"encryption_key": [key, b"short"]}):
        options: dict[str, Any] = {"encryption_key": key, **bad}
        try:
            EncryptedSession("s", spare, **options)
        except ValueError as exc:
            texts.append(formatted(exc))
        del options
    spare.close()
    assert len(texts) == 2 * len(objects) + 4
    record = await store.load("s")
    assert record is not None
    data_key = session._unwrap(record)  # noqa: SLF001 - the data key, to look for it
    secrets = [*secret_forms(base64.urlsafe_b64decode(key)), *secret_forms(data_key)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
    await session.aclose()
    await store.aclose()


# 6. Wrong master key and shredded data keys --------------------------------------------------


@pytest.mark.sqlite
async def test_wrong_master_key_write_is_refused_before_anything_is_stored(
    tmp_path: Path, key: str
) -> None:
    """A first write under a key that opens none of the newest rows raises; nothing is stored."""
    path = tmp_path / "wrong.db"
    async with ours(path, key) as right:
        await right.add_items(HISTORY)
    async with ours(path, new_key()) as wrong:
        with pytest.raises(UnknownKeyError, match="refusing to write"):
            await wrong.add_items([msg("lost")])
    async with ours(path, key) as right:
        assert await right.get_items() == HISTORY
    assert len(raw_rows(path)) == len(HISTORY)


@pytest.mark.sqlite
async def test_wrong_master_key_over_sdk_rows_is_refused(tmp_path: Path, key: str) -> None:
    """Over rows the SDK's class wrote, a write under another key is refused too."""
    path = tmp_path / "wrongsdk.db"
    theirs = sdk(path, key)
    await theirs.add_items(HISTORY)
    close_sdk(theirs)
    async with ours(path, new_key()) as wrong:
        with pytest.raises(UnknownKeyError, match="refusing to write"):
            await wrong.add_items([msg("lost")])
    assert len(raw_rows(path)) == len(HISTORY)


@pytest.mark.sqlite
async def test_rotated_keys_still_write(tmp_path: Path, key: str) -> None:
    """A new key listed first, with the old one still listed, writes into the old history."""
    path = tmp_path / "rot.db"
    async with ours(path, key) as old:
        await old.add_items(HISTORY)
    async with ours(path, [new_key(), key]) as rotated:
        await rotated.add_items([msg("more")])
        assert await rotated.get_items() == [*HISTORY, msg("more")]


@pytest.mark.sqlite
async def test_write_after_another_object_shredded_the_key_is_refused(
    tmp_path: Path, key: str
) -> None:
    """After shred() by one object, another open object's add_items raises and stores nothing."""
    path, store = tmp_path / "shred.db", SQLiteKeyStore(tmp_path / "keys.db")
    first = ours(path, key, key_store=store)
    second = ours(path, key, key_store=store)
    await first.add_items([msg("a")])
    await second.add_items([msg("b")])
    await first.shred()
    with pytest.raises(UnknownKeyError, match="shredded"):
        await second.add_items([msg("after the shred")])
    assert raw_rows(path) == []
    third = ours(path, key, key_store=store)
    await third.add_items([msg("fresh")])
    assert await third.get_items() == [msg("fresh")]
    for session in (first, second, third):
        await session.aclose()
    await store.aclose()


# 7. Strict decoding --------------------------------------------------------------------------


@pytest.mark.sqlite
@pytest.mark.parametrize("junk", [" ", "\n", "!", "==", "A"])
async def test_ciphertext_with_junk_inserted_is_not_returned(
    tmp_path: Path, key: str, junk: str
) -> None:
    """A ciphertext with a space, newline or other junk inserted fails authentication."""
    path = tmp_path / "junk.db"
    async with ours(path, key) as session:
        await session.add_items([msg("a")])
    row_id, text = raw_rows(path)[0]
    envelope = json.loads(text)
    ct = envelope["ct"]
    envelope["ct"] = ct[:10] + junk + ct[10:]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE agent_messages SET message_data = ? WHERE id = ?",
            (json.dumps(envelope, separators=(",", ":")), row_id),
        )
    conn.close()
    async with ours(path, key, strict=True) as session:
        with pytest.raises(DecryptionError):
            await session.get_items()


def mutations(text: str) -> list[str]:
    """Every text that differs from ``text`` in one byte, for a spread of byte values."""
    data = text.encode()
    out: list[str] = []
    for index in range(len(data)):
        for value in {
            0,
            0x20,
            0x2B,
            0x2F,
            0x3D,
            0x41,
            0x5F,
            0x7F,
            0xFF,
            data[index] ^ 1,
            data[index] ^ 0x20,
        }:
            if value != data[index]:
                changed = data[:index] + bytes([value]) + data[index + 1 :]
                out.append(changed.decode("utf-8", "surrogateescape"))
    return out


@pytest.mark.sqlite
@pytest.mark.parametrize("fmt", ["native", "sdk"])
async def test_no_single_byte_change_to_a_row_is_ever_returned(
    tmp_path: Path, key: str, fmt: str
) -> None:
    """Fuzz: every one-byte change of a stored row (either format) is never returned as data."""
    path = tmp_path / "fuzz.db"
    async with ours(path, key, format=fmt) as session:
        await session.add_items([msg("x" * 20)])
        codec = session._codec  # noqa: SLF001 - decode each change without a database trip
        ((_, original),) = raw_rows(path)
        changed = [text for text in mutations(original) if text != original]
        for text in changed:
            try:
                item = codec.decode(text)
            except (ValueError, TypeError):
                continue
            pytest.fail(f"a changed row decoded to {item!r}: {text!r}")
    # The same changes, stored in the file (bytes that are not UTF-8 stored as U+FFFD).
    storable = {t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for t in changed}
    storable.discard(original)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES ('s', ?)",
            [(text,) for text in sorted(storable)],
        )
    conn.close()
    async with ours(path, key) as session:
        assert await session.get_items() == [msg("x" * 20)]
    assert len(changed) > 1000


# 8. Key files are private --------------------------------------------------------------------


@pytest.mark.sqlite
async def test_new_key_store_file_is_created_0600(tmp_path: Path, key: str) -> None:
    """A new key store file is readable and writable by its owner only, whatever the umask."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "keys.db"
        async with ours(tmp_path / "d.db", key, key_store=path) as session:
            await session.add_items([msg("a")])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.sqlite
async def test_existing_key_store_file_keeps_its_mode(tmp_path: Path, key: str) -> None:
    """A key store file that already exists keeps the permissions its owner gave it."""
    path = tmp_path / "shared-keys.db"
    path.touch()
    path.chmod(0o640)
    async with ours(tmp_path / "d.db", key, key_store=path) as session:
        await session.add_items([msg("a")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# 9. close(), called or awaited ----------------------------------------------------------------


@pytest.mark.sqlite
async def test_close_called_or_awaited_over_sqlite(tmp_path: Path, key: str) -> None:
    """Over SQLite, close() closes at once, and awaiting it works too; both are idempotent."""
    called = ours(tmp_path / "c1.db", key)
    called.close()
    assert called.state.value == "closed"
    assert called.underlying_session.state.value == "closed"  # type: ignore[attr-defined]
    awaited = ours(tmp_path / "c2.db", key)
    await awaited.close()
    await awaited.close()
    called.close()
    assert awaited.underlying_session.state.value == "closed"  # type: ignore[attr-defined]


@pytest.mark.sqlite
def test_close_without_a_loop_over_sqlite(tmp_path: Path, key: str) -> None:
    """Over SQLite, close() works from plain synchronous code, like the SDK's."""
    session = ours(tmp_path / "sync.db", key)
    session.close()
    assert session.state.value == "closed"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
async def test_close_called_or_awaited_over_sqlalchemy(tmp_path: Path, key: str, kind: str) -> None:
    """Over SQLAlchemy, ``await enc.close()`` closes, and a bare ``enc.close()`` closes too."""
    url = database_url(kind, tmp_path)
    sessions, messages = unique_tables()
    tables: dict[str, Any] = {"sessions_table": sessions, "messages_table": messages}
    engine = create_async_engine(url)
    try:
        first = EncryptedSession(
            "c", SQLAlchemySession("c", engine=engine, create_tables=True, **tables), key
        )
        await first.add_items([msg("a")])
        await first.close()
        assert first.underlying_session.state.value == "closed"  # type: ignore[attr-defined]
        second = EncryptedSession("c", SQLAlchemySession.from_url("c", url=url, **tables), key)
        assert await second.get_items() == [msg("a")]
        second.close()
        await asyncio.sleep(0.2)
        assert second.underlying_session.state.value == "closed"  # type: ignore[attr-defined]
        await second.aclose()
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()
