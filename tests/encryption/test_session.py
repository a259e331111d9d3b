"""EncryptedSession on real SQLite files: secrecy, authenticity, TTL, rotation and shredding.

Rows are read and edited with plain ``sqlite3`` to see exactly what is at rest and to play the
attacker who can write to the database but holds no key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import agents
import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.memory.session_settings import SessionSettings
from cryptography.fernet import Fernet

from agent_sessions import (
    AdvancedSQLiteSession,
    CorruptItemError,
    DecryptionError,
    EncryptedSession,
    ItemValidationError,
    KeyStore,
    MemoryKeyStore,
    SessionClosedError,
    SessionState,
    SQLiteKeyStore,
    SQLiteSession,
    SQLiteStore,
    UnknownKeyError,
    WeakKeyWarning,
)
from agent_sessions.encryption.crypto import key_id, parse_master_key
from agent_sessions.offline import OfflineModel
from tests.conftest import count_rows_sqlite, write_raw_sqlite
from tests.encryption_kit import Clock, new_key, raw_rows

pytestmark = pytest.mark.sqlite

MARKER = "zebra-quartz-7f3a9c"
"""A string that occurs in the database files only if an item is stored in clear."""

MasterKeys = str | bytes | Sequence[str | bytes]


# Helpers ---------------------------------------------------------------------------------------


def msg(text: str) -> TResponseInputItem:
    """Return a user message item."""
    return {"role": "user", "content": text}


def kid_of(key: str | bytes) -> str:
    """Return the public id of a master key, as written into envelopes and key records."""
    return parse_master_key(key).kid


def encrypted(
    path: Path, key: MasterKeys, session_id: str = "s", **options: Any
) -> EncryptedSession:
    """Return an EncryptedSession over our SQLiteSession on ``path``."""
    return EncryptedSession(session_id, SQLiteSession(session_id, path), key, **options)


def envelopes(path: Path, session_id: str = "s") -> list[dict[str, Any]]:
    """Return a session's stored rows parsed as JSON objects, oldest first."""
    return [json.loads(text) for _, text in raw_rows(path, session_id)]


def set_raw(path: Path, row_id: int, text: str) -> None:
    """Overwrite one stored row's text, bypassing every class."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE agent_messages SET message_data = ? WHERE id = ?", (text, row_id))
    finally:
        conn.close()


def edit_envelope(path: Path, row_id: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``edit`` to one stored envelope and write it back."""
    conn = sqlite3.connect(path)
    try:
        (text,) = conn.execute(
            "SELECT message_data FROM agent_messages WHERE id = ?", (row_id,)
        ).fetchone()
    finally:
        conn.close()
    envelope = json.loads(text)
    edit(envelope)
    set_raw(path, row_id, json.dumps(envelope))


def flip_middle(text: str) -> str:
    """Change one character mid-``text`` (the last one's low bits may be unused by base64)."""
    index = len(text) // 2
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def stored_bytes(path: Path) -> bytes:
    """Return the bytes of a SQLite database and of its -wal and -journal files, if any."""
    parts = [path, Path(f"{path}-wal"), Path(f"{path}-journal")]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def backup(source: Path, target: Path) -> None:
    """Copy a SQLite database with the backup API, as a backup job would."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def key_records(path: Path) -> list[tuple[str, str]]:
    """Return every ``(session_id, record)`` of a SQLiteKeyStore file."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT session_id, record FROM agent_session_keys").fetchall()
    finally:
        conn.close()
    return [(str(sid), str(record)) for sid, record in rows]


def assert_skip_logged(caplog: pytest.LogCaptureFixture, session_id: str, *details: str) -> None:
    """Assert that a warning on the package logger reported a skipped row of ``session_id``."""
    messages = [
        record.getMessage()
        for record in caplog.records
        if record.name == "agent_sessions" and record.levelno == logging.WARNING
    ]
    assert any(
        "undecodable row" in text
        and f"in session {session_id!r}" in text
        and all(detail in text for detail in details)
        for text in messages
    ), messages


@pytest.fixture
def key() -> str:
    """A fresh Fernet master key."""
    return new_key()


@pytest.fixture
def clock() -> Clock:
    """A hand-set clock starting at a whole second."""
    return Clock()


@pytest.fixture(params=["memory", "sqlite"])
async def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    """A key store kept apart from the data file: in memory, or a SQLite file of its own."""
    store: KeyStore = (
        MemoryKeyStore() if request.param == "memory" else SQLiteKeyStore(tmp_path / "keys.db")
    )
    try:
        yield store
    finally:
        await store.aclose()


# 1. Round trip ---------------------------------------------------------------------------------


async def test_items_round_trip_with_limits_pop_and_clear(db_path: Path, key: str) -> None:
    """Added items read back in order, limits take the newest, pop takes the last, clear empties."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a"), msg("b")])
        await session.add_items([msg("c")])
        assert await session.get_items() == [msg("a"), msg("b"), msg("c")]
        assert await session.get_items(2) == [msg("b"), msg("c")]
        assert await session.get_items(5) == [msg("a"), msg("b"), msg("c")]
        assert await session.get_items(0) == []
        assert await session.pop_item() == msg("c")
        assert await session.get_items() == [msg("a"), msg("b")]
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.pop_item() is None
    assert count_rows_sqlite(db_path, "s") == 0


async def test_items_survive_closing_and_reopening_with_the_same_key(
    db_path: Path, key: str
) -> None:
    """A new object with the same key reads, pops and extends what a closed one wrote."""
    first = encrypted(db_path, key)
    await first.add_items([msg("a"), msg("b")])
    await first.aclose()
    async with encrypted(db_path, key) as second:
        assert await second.get_items() == [msg("a"), msg("b")]
        assert await second.pop_item() == msg("b")
        await second.add_items([msg("c")])
    async with encrypted(db_path, key) as third:
        assert await third.get_items() == [msg("a"), msg("c")]


# 2. No plaintext at rest -----------------------------------------------------------------------


def _secret_turn() -> list[TResponseInputItem]:
    return [
        msg(f"my password is {MARKER}"),
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": json.dumps({"q": MARKER}),
        },
        {"type": "function_call_output", "call_id": "call_1", "output": MARKER},
    ]


async def test_no_plaintext_at_rest_over_our_sqlite_session(tmp_path: Path, key: str) -> None:
    """The marker is in a plain session's files but in no encrypted one's, open or closed."""
    plain_path, secret_path = tmp_path / "plain.db", tmp_path / "secret.db"
    async with SQLiteSession("s", plain_path) as plain:
        await plain.add_items(_secret_turn())
    assert MARKER.encode() in stored_bytes(plain_path)  # the check below can see plaintext
    async with encrypted(secret_path, key) as session:
        await session.add_items(_secret_turn())
        assert await session.get_items() == _secret_turn()
        assert MARKER.encode() not in stored_bytes(secret_path)
    assert MARKER.encode() not in stored_bytes(secret_path)


async def test_no_plaintext_at_rest_over_the_sdk_sqlite_session(tmp_path: Path, key: str) -> None:
    """Over agents.SQLiteSession the marker is not in the file, though the SDK alone stores it."""
    plain_path, secret_path = tmp_path / "plain.db", tmp_path / "secret.db"
    plain = agents.SQLiteSession("s", plain_path)
    await plain.add_items(_secret_turn())
    plain.close()
    assert MARKER.encode() in stored_bytes(plain_path)
    session = EncryptedSession("s", agents.SQLiteSession("s", secret_path), key)
    try:
        await session.add_items(_secret_turn())
        assert await session.get_items() == _secret_turn()
    finally:
        session.close()
    assert MARKER.encode() not in stored_bytes(secret_path)


# 3. Envelope format ----------------------------------------------------------------------------


async def test_rows_are_versioned_json_envelopes(db_path: Path, key: str) -> None:
    """Each row is a JSON object of just __enc__ "as1", the key id, the whole-second ts and ct."""
    clock = Clock(1_700_000_123.75)
    async with encrypted(db_path, key, clock=clock) as session:
        await session.add_items([msg("a"), msg("b")])
    stored = envelopes(db_path)
    assert len(stored) == 2
    for envelope in stored:
        assert set(envelope) == {"__enc__", "kid", "ts", "ct"}
        assert envelope["__enc__"] == "as1"
        assert envelope["kid"] == kid_of(key)
        assert envelope["ts"] == 1_700_000_123
        assert isinstance(envelope["ct"], str)
        base64.urlsafe_b64decode(envelope["ct"] + "=" * (-len(envelope["ct"]) % 4))


async def test_equal_items_get_different_ciphertexts(db_path: Path, key: str) -> None:
    """Two equal items written at the same second are stored as different ciphertexts."""
    async with encrypted(db_path, key, clock=Clock()) as session:
        await session.add_items([msg("same"), msg("same")])
    first, second = envelopes(db_path)
    assert first["ts"] == second["ts"]
    assert first["ct"] != second["ct"]


# 4. Wrong key ----------------------------------------------------------------------------------


async def test_wrong_key_reads_nothing_and_logs_the_unknown_key_id(
    db_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """get_items under a wrong key returns [] and logs a warning naming the rows' key id."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a"), msg("b")])
    async with encrypted(db_path, new_key()) as wrong:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await wrong.get_items() == []
            assert await wrong.get_items(1) == []
    assert_skip_logged(caplog, "s", f"key id {kid_of(key)!r}")


async def test_wrong_key_pop_returns_none_and_removes_nothing(db_path: Path, key: str) -> None:
    """pop_item under a wrong key returns None and leaves every row, still readable with the key."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a"), msg("b")])
    before = raw_rows(db_path)
    async with encrypted(db_path, new_key()) as wrong:
        assert await wrong.pop_item() is None
    assert raw_rows(db_path) == before
    async with encrypted(db_path, key) as session:
        assert await session.get_items() == [msg("a"), msg("b")]


async def test_wrong_key_strict_raises_unknown_key_error_and_removes_nothing(
    db_path: Path, key: str
) -> None:
    """Strict, a wrong key raises UnknownKeyError on get and pop, and nothing is removed."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a"), msg("b")])
    before = raw_rows(db_path)
    async with encrypted(db_path, new_key(), strict=True) as wrong:
        with pytest.raises(UnknownKeyError, match=kid_of(key)):
            await wrong.get_items()
        with pytest.raises(UnknownKeyError, match=kid_of(key)):
            await wrong.pop_item()
    assert raw_rows(db_path) == before


# 5. Tampering ----------------------------------------------------------------------------------

SECOND_KEY = new_key()
"""Configured beside the writing key in tamper tests, so a kid can be swapped for a known one."""


def _flip_ct(envelope: dict[str, Any]) -> None:
    envelope["ct"] = flip_middle(envelope["ct"])


def _drop_ct_tail(envelope: dict[str, Any]) -> None:
    envelope["ct"] = envelope["ct"][:-4]


def _cut_ct_short(envelope: dict[str, Any]) -> None:
    envelope["ct"] = envelope["ct"][:16]


def _bump_ts(envelope: dict[str, Any]) -> None:
    envelope["ts"] += 1


def _swap_kid_to_other_configured_key(envelope: dict[str, Any]) -> None:
    envelope["kid"] = kid_of(SECOND_KEY)


def _change_version(envelope: dict[str, Any]) -> None:
    envelope["__enc__"] = "as2"


def _replace_with_plaintext(envelope: dict[str, Any]) -> None:
    envelope.clear()
    envelope.update(msg("injected in clear"))


TAMPERS = [
    pytest.param(_flip_ct, id="ct-flipped"),
    pytest.param(_drop_ct_tail, id="ct-tail-dropped"),
    pytest.param(_cut_ct_short, id="ct-cut-short"),
    pytest.param(_bump_ts, id="ts-changed"),
    pytest.param(_swap_kid_to_other_configured_key, id="kid-swapped"),
    pytest.param(_change_version, id="version-changed"),
    pytest.param(_replace_with_plaintext, id="plaintext-injected"),
]


async def _three_rows_newest_tampered(
    path: Path, key: str, tamper: Callable[[dict[str, Any]], None]
) -> list[tuple[int, str]]:
    """Write a, b, c with ``key``, tamper with c's row, and return the rows as stored."""
    async with encrypted(path, [key, SECOND_KEY], clock=Clock()) as session:
        await session.add_items([msg("a"), msg("b"), msg("c")])
    newest_id = raw_rows(path)[-1][0]
    edit_envelope(path, newest_id, tamper)
    return raw_rows(path)


@pytest.mark.parametrize("tamper", TAMPERS)
async def test_tampered_row_is_skipped_with_a_warning_and_kept(
    db_path: Path,
    key: str,
    caplog: pytest.LogCaptureFixture,
    tamper: Callable[[dict[str, Any]], None],
) -> None:
    """A tampered row is left out by reads and passed over by pop, with a warning, and is kept."""
    stored = await _three_rows_newest_tampered(db_path, key, tamper)
    async with encrypted(db_path, [key, SECOND_KEY], clock=Clock()) as session:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await session.get_items() == [msg("a"), msg("b")]
            assert await session.get_items(2) == [msg("a"), msg("b")]
            assert await session.pop_item() == msg("b")
    assert_skip_logged(caplog, "s")
    assert raw_rows(db_path) == [stored[0], stored[2]]


@pytest.mark.parametrize("tamper", TAMPERS)
async def test_tampered_row_raises_when_strict_and_is_kept(
    db_path: Path, key: str, tamper: Callable[[dict[str, Any]], None]
) -> None:
    """Strict, a tampered row raises DecryptionError (not UnknownKeyError) and is kept."""
    stored = await _three_rows_newest_tampered(db_path, key, tamper)
    async with encrypted(db_path, [key, SECOND_KEY], clock=Clock(), strict=True) as session:
        with pytest.raises(DecryptionError) as raised:
            await session.get_items()
        assert raised.type is DecryptionError
        with pytest.raises(DecryptionError) as raised:
            await session.pop_item()
        assert raised.type is DecryptionError
    assert raw_rows(db_path) == stored


async def test_row_that_is_not_json_raises_corrupt_item_error_when_strict(
    db_path: Path, key: str
) -> None:
    """A row of text that is not JSON raises CorruptItemError when strict, and is kept."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a")])
    write_raw_sqlite(db_path, "s", "{broken")
    async with encrypted(db_path, key, strict=True) as session:
        with pytest.raises(CorruptItemError, match="'s'"):
            await session.get_items()
    async with encrypted(db_path, key) as session:
        assert await session.get_items() == [msg("a")]
    assert count_rows_sqlite(db_path, "s") == 2


async def test_ts_forged_into_the_past_raises_when_strict(db_path: Path, key: str) -> None:
    """A strict session raises DecryptionError on a row whose ts was moved back past the TTL."""
    clock = Clock()
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("fresh")])
    ((row_id, _),) = raw_rows(db_path)

    def backdate(envelope: dict[str, Any]) -> None:
        envelope["ts"] = 0

    edit_envelope(db_path, row_id, backdate)
    async with encrypted(db_path, key, ttl=100, clock=clock, strict=True) as session:
        with pytest.raises(DecryptionError):
            await session.get_items()


# 6. Swapping rows between sessions -------------------------------------------------------------


async def test_row_copied_from_another_session_is_not_returned(
    db_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row copied from session a into session b (same key, same file) is skipped by b."""
    async with encrypted(db_path, key, "a") as a, encrypted(db_path, key, "b") as b:
        await a.add_items([msg("from a")])
        await b.add_items([msg("from b")])
    ((_, stolen),) = raw_rows(db_path, "a")
    write_raw_sqlite(db_path, "b", stolen)
    async with encrypted(db_path, key, "b") as b:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await b.get_items() == [msg("from b")]
            assert await b.pop_item() == msg("from b")
    assert_skip_logged(caplog, "b", "failed authentication")
    assert raw_rows(db_path, "b")[-1][1] == stolen


async def test_row_copied_from_another_session_raises_when_strict(db_path: Path, key: str) -> None:
    """A strict session raises DecryptionError on a row copied from another session."""
    async with encrypted(db_path, key, "a") as a, encrypted(db_path, key, "b") as b:
        await a.add_items([msg("from a")])
        await b.add_items([msg("from b")])
    ((_, stolen),) = raw_rows(db_path, "a")
    write_raw_sqlite(db_path, "b", stolen)
    async with encrypted(db_path, key, "b", strict=True) as b:
        with pytest.raises(DecryptionError, match="another session"):
            await b.get_items()


# 7. Replay -------------------------------------------------------------------------------------


async def test_replayed_row_of_a_popped_item_decrypts_with_its_original_time(
    db_path: Path, key: str, clock: Clock
) -> None:
    """A popped item's old row put back into the same session is returned again, expiring on time.

    The envelope binds the session and the write time, not the row's place in the history, so
    nothing detects the replay; the TTL still counts from the original write.
    """
    start = clock.now
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("a")])
        clock.now = start + 10
        await session.add_items([msg("b")])
        old_row = raw_rows(db_path)[-1][1]
        assert await session.pop_item() == msg("b")
    write_raw_sqlite(db_path, "s", old_row)
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        clock.now = start + 20
        assert await session.get_items() == [msg("a"), msg("b")]
        assert envelopes(db_path)[-1]["ts"] == int(start) + 10
        clock.now = start + 101
        assert await session.get_items() == [msg("b")]
        clock.now = start + 111
        assert await session.get_items() == []


# 8. Key rotation -------------------------------------------------------------------------------


async def test_rotated_session_reads_old_rows_and_writes_under_the_new_key(
    db_path: Path, key: str
) -> None:
    """With [k2, k1] every k1 row is read, and new rows are written under k2."""
    async with encrypted(db_path, key) as old:
        await old.add_items([msg("a"), msg("b")])
    rotated_key = new_key()
    async with encrypted(db_path, [rotated_key, key]) as rotated:
        assert await rotated.get_items() == [msg("a"), msg("b")]
        await rotated.add_items([msg("c")])
        assert await rotated.get_items() == [msg("a"), msg("b"), msg("c")]
    kids = [envelope["kid"] for envelope in envelopes(db_path)]
    assert kids == [kid_of(key), kid_of(key), kid_of(rotated_key)]
    assert kid_of(key) != kid_of(rotated_key)


async def test_reencrypt_moves_old_rows_to_the_new_key_in_place(db_path: Path, key: str) -> None:
    """reencrypt() counts the rows it moved, keeps their ids and ts, and frees the old key."""
    async with encrypted(db_path, key, clock=Clock(1000.0)) as old:
        await old.add_items([msg("a"), msg("b")])
    rotated_key = new_key()
    async with encrypted(db_path, [rotated_key, key], clock=Clock(2000.0)) as rotated:
        await rotated.add_items([msg("c")])
        before = envelopes(db_path)
        ids_before = [row_id for row_id, _ in raw_rows(db_path)]
        assert await rotated.reencrypt() == 2
        assert await rotated.reencrypt() == 0
    after = envelopes(db_path)
    assert [row_id for row_id, _ in raw_rows(db_path)] == ids_before
    assert [e["ts"] for e in after] == [e["ts"] for e in before] == [1000, 1000, 2000]
    assert {e["kid"] for e in after} == {kid_of(rotated_key)}
    assert after[2] == before[2]  # a row already under the new key is not rewritten
    async with encrypted(db_path, rotated_key, ttl=None, strict=True) as only_new:
        assert await only_new.get_items() == [msg("a"), msg("b"), msg("c")]


async def test_reencrypt_keeps_each_items_expiry(db_path: Path, key: str, clock: Clock) -> None:
    """An item re-encrypted later still expires ttl seconds after it was first written."""
    start = clock.now
    async with encrypted(db_path, key, ttl=100, clock=clock) as old:
        await old.add_items([msg("a")])
    rotated_key = new_key()
    clock.now = start + 90
    async with encrypted(db_path, [rotated_key, key], ttl=100, clock=clock) as rotated:
        assert await rotated.reencrypt() == 1
    async with encrypted(db_path, rotated_key, ttl=100, clock=clock) as only_new:
        clock.now = start + 100
        assert await only_new.get_items() == [msg("a")]
        clock.now = start + 101
        assert await only_new.get_items() == []


async def test_reencrypt_leaves_rows_under_unknown_keys_untouched(
    db_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that no configured key opens keep their exact text and are not counted by reencrypt."""
    stranger_key = new_key()
    elsewhere = db_path.with_name("stranger.db")
    async with encrypted(elsewhere, stranger_key) as stranger:
        await stranger.add_items([msg("not ours")])
    async with encrypted(db_path, key) as old:
        await old.add_items([msg("a")])
    # A wrong key may not write here; the attacker writes the row raw.
    write_raw_sqlite(db_path, "s", raw_rows(elsewhere)[0][1])
    async with encrypted(db_path, key) as old:
        await old.add_items([msg("b")])
    unknown_row = raw_rows(db_path)[1]
    rotated_key = new_key()
    async with encrypted(db_path, [rotated_key, key]) as rotated:
        assert await rotated.reencrypt() == 2
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await rotated.get_items() == [msg("a"), msg("b")]
    assert raw_rows(db_path)[1] == unknown_row
    async with encrypted(db_path, stranger_key) as stranger:
        assert await stranger.get_items() == [msg("not ours")]


async def test_reencrypt_rewraps_the_data_key_under_the_new_master(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """With a key store, reencrypt() re-wraps the data key, so the new master alone reads all."""
    async with encrypted(db_path, key, key_store=key_store) as old:
        await old.add_items([msg("a"), msg("b")])
    rows_before = raw_rows(db_path)
    rotated_key = new_key()
    async with encrypted(db_path, [rotated_key, key], key_store=key_store) as rotated:
        assert await rotated.reencrypt() == 0  # the rows are under the data key, which is kept
    record = await key_store.load("s")
    assert record is not None
    assert record.startswith(f"as1.{kid_of(rotated_key)}.")
    assert raw_rows(db_path) == rows_before
    async with encrypted(db_path, rotated_key, key_store=key_store, strict=True) as only_new:
        assert await only_new.get_items() == [msg("a"), msg("b")]


# 9. TTL ----------------------------------------------------------------------------------------


async def test_expired_items_are_not_returned(db_path: Path, key: str, clock: Clock) -> None:
    """Items older than ttl are left out of get_items, and limits count only live items."""
    start = clock.now
    async with encrypted(db_path, key, ttl=100, clock=clock, strict=True) as session:
        await session.add_items([msg("old 1"), msg("old 2")])
        clock.now = start + 50
        await session.add_items([msg("new 1"), msg("new 2")])
        clock.now = start + 120
        assert await session.get_items() == [msg("new 1"), msg("new 2")]
        assert await session.get_items(3) == [msg("new 1"), msg("new 2")]
        assert await session.get_items(1) == [msg("new 2")]
    assert count_rows_sqlite(db_path, "s") == 4


async def test_expired_items_are_not_popped_and_stay_stored(
    db_path: Path, key: str, clock: Clock
) -> None:
    """pop_item returns None when every item has expired, and deletes none of them."""
    start = clock.now
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("a"), msg("b")])
        clock.now = start + 101
        assert await session.pop_item() is None
    assert count_rows_sqlite(db_path, "s") == 2


async def test_item_is_readable_until_exactly_ttl_seconds_old(
    db_path: Path, key: str, clock: Clock
) -> None:
    """An item is returned at exactly ttl seconds of age and not one second later."""
    start = clock.now
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("a")])
        clock.now = start + 100
        assert await session.get_items() == [msg("a")]
        clock.now = start + 101
        assert await session.get_items() == []


async def test_ttl_none_never_expires(db_path: Path, key: str, clock: Clock) -> None:
    """With ttl=None an item is still returned and popped centuries after it was written."""
    async with encrypted(db_path, key, ttl=None, clock=clock) as session:
        await session.add_items([msg("a"), msg("b")])
        clock.now += 10_000_000_000
        assert await session.get_items() == [msg("a"), msg("b")]
        assert await session.pop_item() == msg("b")


async def test_default_ttl_is_ten_minutes(db_path: Path, key: str, clock: Clock) -> None:
    """Without a ttl argument an item lives 600 seconds, as with the SDK's EncryptedSession."""
    start = clock.now
    async with encrypted(db_path, key, clock=clock) as session:
        await session.add_items([msg("a")])
        clock.now = start + 600
        assert await session.get_items() == [msg("a")]
        clock.now = start + 601
        assert await session.get_items() == []


async def test_purge_expired_deletes_exactly_the_expired_authenticated_rows(
    db_path: Path, key: str, clock: Clock
) -> None:
    """purge_expired() deletes and counts expired rows it can authenticate, keeping all others."""
    start = clock.now
    elsewhere = db_path.with_name("stranger.db")
    async with encrypted(elsewhere, new_key(), ttl=100, clock=clock) as stranger:
        await stranger.add_items([msg("old, unknown key")])
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("old 1"), msg("old 2"), msg("old, to be tampered")])
    tampered_id = raw_rows(db_path)[-1][0]
    edit_envelope(db_path, tampered_id, _flip_ct)
    write_raw_sqlite(db_path, "s", raw_rows(elsewhere)[0][1])
    clock.now = start + 50
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("fresh")])
    keep = [raw_rows(db_path)[i] for i in (2, 3, 4)]
    clock.now = start + 120
    async with encrypted(db_path, key, ttl=100, clock=clock) as session:
        assert await session.purge_expired() == 2
        assert await session.purge_expired() == 0
        assert await session.get_items() == [msg("fresh")]
    assert raw_rows(db_path) == keep


@pytest.mark.parametrize("ttl", [0, -1, -0.5, True, False, math.nan])
def test_ttl_must_be_a_positive_number(db_path: Path, key: str, ttl: float) -> None:
    """A ttl that is zero, negative, NaN or a bool raises ValueError."""
    underlying = SQLiteSession("s", db_path)
    try:
        with pytest.raises(ValueError, match="ttl"):
            EncryptedSession("s", underlying, key, ttl=ttl)
    finally:
        underlying.close()


def test_max_scan_items_must_be_positive(db_path: Path, key: str) -> None:
    """max_scan_items=0 raises ValueError."""
    underlying = SQLiteSession("s", db_path)
    try:
        with pytest.raises(ValueError, match="max_scan_items"):
            EncryptedSession("s", underlying, key, max_scan_items=0)
    finally:
        underlying.close()


# 10. Crypto-shredding --------------------------------------------------------------------------


async def test_each_session_gets_its_own_data_key(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """Two sessions on one key store get different data keys, each wrapped for its own session."""
    async with (
        encrypted(db_path, key, "a", key_store=key_store) as a,
        encrypted(db_path, key, "b", key_store=key_store) as b,
    ):
        await a.add_items([msg("a")])
        await b.add_items([msg("b")])
    master = parse_master_key(key)
    data_keys = {}
    for session_id in ("a", "b"):
        record = await key_store.load(session_id)
        assert record is not None
        data_key = master.unwrap(record, session_id)
        data_keys[session_id] = data_key
        (envelope,) = envelopes(db_path, session_id)
        assert envelope["kid"] == key_id(data_key, b"data") != kid_of(key)
    assert data_keys["a"] != data_keys["b"]


async def test_key_store_record_holds_the_data_key_only_wrapped(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """A key record names its master key id and never contains the data key itself."""
    async with encrypted(db_path, key, key_store=key_store) as session:
        await session.add_items([msg("a")])
    record = await key_store.load("s")
    assert record is not None
    assert record.startswith(f"as1.{kid_of(key)}.")
    data_key = parse_master_key(key).unwrap(record, "s")
    assert len(data_key) == 32
    for form in (
        base64.urlsafe_b64encode(data_key).rstrip(b"="),
        base64.b64encode(data_key).rstrip(b"="),
        data_key.hex().encode(),
    ):
        assert form.decode() not in record
    if isinstance(key_store, SQLiteKeyStore):
        assert data_key not in stored_bytes(key_store.path)


async def test_data_is_read_by_a_new_object_with_the_same_key_store(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """A new session object with the same key and key store reads what another one wrote."""
    async with encrypted(db_path, key, key_store=key_store) as writer:
        await writer.add_items([msg("a"), msg("b")])
    async with encrypted(db_path, key, key_store=key_store, strict=True) as reader:
        assert await reader.get_items() == [msg("a"), msg("b")]


async def test_data_under_a_key_store_is_unreadable_without_it(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """The master key alone, without the key store, cannot read a session's rows."""
    async with encrypted(db_path, key, key_store=key_store) as writer:
        await writer.add_items([msg("a")])
    async with encrypted(db_path, key, strict=True) as no_store:
        with pytest.raises(UnknownKeyError):
            await no_store.get_items()


async def test_shred_makes_a_backup_taken_before_it_unreadable(
    tmp_path: Path, db_path: Path, key: str, key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """After shred(), a copy of the data file taken earlier yields nothing for that session only."""
    async with (
        encrypted(db_path, key, "a", key_store=key_store) as a,
        encrypted(db_path, key, "b", key_store=key_store) as b,
    ):
        await a.add_items([msg("a1"), msg("a2")])
        await b.add_items([msg("b1")])
    copy = tmp_path / "backup.db"
    backup(db_path, copy)
    async with encrypted(db_path, key, "a", key_store=key_store) as a:
        await a.shred()
        assert await a.get_items() == []
    assert count_rows_sqlite(db_path, "a") == 0
    assert await key_store.load("a") is None
    assert count_rows_sqlite(copy, "a") == 2
    async with encrypted(copy, key, "a", key_store=key_store) as restored:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await restored.get_items() == []
            assert await restored.pop_item() is None
    assert_skip_logged(caplog, "a", "not among the configured keys")
    async with encrypted(copy, key, "a", key_store=key_store, strict=True) as restored:
        with pytest.raises(UnknownKeyError):
            await restored.get_items()
    async with encrypted(copy, key, "b", key_store=key_store) as other_copy:
        assert await other_copy.get_items() == [msg("b1")]
    async with encrypted(db_path, key, "b", key_store=key_store) as other:
        assert await other.get_items() == [msg("b1")]


async def test_writes_after_shred_use_a_new_data_key(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """The same object keeps working after shred(), under a fresh data key and a new record."""
    async with encrypted(db_path, key, key_store=key_store) as session:
        await session.add_items([msg("before")])
        (old,) = envelopes(db_path)
        old_record = await key_store.load("s")
        await session.shred()
        await session.add_items([msg("after")])
        assert await session.get_items() == [msg("after")]
    (new,) = envelopes(db_path)
    new_record = await key_store.load("s")
    assert new_record is not None
    assert new_record != old_record
    assert new["kid"] != old["kid"]
    async with encrypted(db_path, key, key_store=key_store, strict=True) as reader:
        assert await reader.get_items() == [msg("after")]


async def test_shredded_key_is_overwritten_in_the_key_file(
    tmp_path: Path, db_path: Path, key: str
) -> None:
    """After shred() the deleted record's bytes are gone from the SQLiteKeyStore file."""
    keys_path = tmp_path / "keys.db"
    store = SQLiteKeyStore(keys_path)
    try:
        async with encrypted(db_path, key, key_store=store) as session:
            await session.add_items([msg("a")])
            record = await store.load("s")
            assert record is not None
            assert record.encode() in stored_bytes(keys_path)
            await session.shred()
    finally:
        await store.aclose()
    assert record.encode() not in stored_bytes(keys_path)
    assert record.split(".", 2)[2].encode() not in stored_bytes(keys_path)


async def test_shred_without_a_key_store_raises_and_deletes_nothing(
    db_path: Path, key: str
) -> None:
    """shred() on a session with derived keys raises ValueError and leaves its rows."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("a")])
        with pytest.raises(ValueError, match="key_store"):
            await session.shred()
        assert await session.get_items() == [msg("a")]
    assert count_rows_sqlite(db_path, "s") == 1


async def test_reads_before_any_write_create_no_data_key(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """Reading or popping an empty session with a key store stores no key record."""
    async with encrypted(db_path, key, key_store=key_store) as session:
        assert await session.get_items() == []
        assert await session.pop_item() is None
    assert await key_store.load("s") is None


async def test_key_store_given_as_a_path_is_opened_and_closed_with_the_session(
    tmp_path: Path, db_path: Path, key: str
) -> None:
    """A key_store path opens a SQLiteKeyStore there, closed when the session closes."""
    keys_path = tmp_path / "keys.db"
    session = encrypted(db_path, key, key_store=keys_path)
    await session.add_items([msg("a")])
    store = session.key_store
    assert isinstance(store, SQLiteKeyStore)
    await session.aclose()
    assert [sid for sid, _ in key_records(keys_path)] == ["s"]
    with pytest.raises(SessionClosedError):
        await store.load("s")
    async with encrypted(db_path, key, key_store=str(keys_path), strict=True) as again:
        assert await again.get_items() == [msg("a")]


async def test_key_store_object_stays_open_after_the_session_closes(
    db_path: Path, key: str
) -> None:
    """A key store passed as an object is the caller's: closing the session leaves it usable."""
    store = MemoryKeyStore()
    async with encrypted(db_path, key, key_store=store) as session:
        await session.add_items([msg("a")])
    assert await store.load("s") is not None
    await store.aclose()


# 11. Data key wrapped under a master key that is not configured --------------------------------


async def _data_key_under(path: Path, master: str, store: KeyStore) -> None:
    async with encrypted(path, master, key_store=store) as session:
        await session.add_items([msg("a"), msg("b")])


async def test_unconfigured_master_lenient_reads_skip_with_a_warning(
    db_path: Path, key: str, key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A lenient session whose data key needs an unconfigured master reads [] and pops None."""
    await _data_key_under(db_path, key, key_store)
    async with encrypted(db_path, new_key(), key_store=key_store) as other:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await other.get_items() == []
            assert await other.pop_item() is None
    assert_skip_logged(caplog, "s")
    assert count_rows_sqlite(db_path, "s") == 2


async def test_unconfigured_master_strict_reads_raise_unknown_key_error(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """A strict session whose data key needs an unconfigured master raises UnknownKeyError."""
    await _data_key_under(db_path, key, key_store)
    async with encrypted(db_path, new_key(), key_store=key_store, strict=True) as other:
        with pytest.raises(UnknownKeyError, match=f"master key id {kid_of(key)!r}"):
            await other.get_items()
        with pytest.raises(UnknownKeyError):
            await other.pop_item()
    assert count_rows_sqlite(db_path, "s") == 2


async def test_unconfigured_master_add_items_raises_and_writes_nothing(
    db_path: Path, key: str, key_store: KeyStore
) -> None:
    """add_items raises UnknownKeyError if the data key needs an unconfigured master; no write."""
    await _data_key_under(db_path, key, key_store)
    record = await key_store.load("s")
    async with encrypted(db_path, new_key(), key_store=key_store) as other:
        with pytest.raises(UnknownKeyError, match=kid_of(key)):
            await other.add_items([msg("c")])
    assert count_rows_sqlite(db_path, "s") == 2
    assert await key_store.load("s") == record


# 12. Master key parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "master",
    [
        pytest.param(Fernet.generate_key().decode(), id="fernet-str"),
        pytest.param(os.urandom(32), id="32-bytes"),
        pytest.param(os.urandom(64), id="64-bytes"),
        pytest.param([Fernet.generate_key().decode(), os.urandom(32)], id="list"),
    ],
)
async def test_strong_master_keys_are_accepted(db_path: Path, master: MasterKeys) -> None:
    """Fernet keys, 32 or more raw bytes, and lists of them work without a warning."""
    async with encrypted(db_path, master) as session:
        await session.add_items([msg("a")])
    async with encrypted(db_path, master) as session:
        assert await session.get_items() == [msg("a")]


async def test_fernet_key_as_bytes_is_the_same_key_as_its_text(db_path: Path) -> None:
    """Data written with Fernet.generate_key() as bytes is read with the same key as str."""
    fernet_key = Fernet.generate_key()
    async with encrypted(db_path, fernet_key) as session:
        await session.add_items([msg("a")])
    async with encrypted(db_path, fernet_key.decode(), strict=True) as session:
        assert await session.get_items() == [msg("a")]


async def test_plain_string_key_warns_and_still_works(db_path: Path) -> None:
    """A password-like string key emits WeakKeyWarning at the caller's line and still encrypts."""
    underlying = SQLiteSession("s", db_path)
    with pytest.warns(WeakKeyWarning, match="not a Fernet key") as record:
        session = EncryptedSession("s", underlying, "correct horse battery staple")
    assert record[0].filename == __file__
    async with session:
        await session.add_items([msg(MARKER)])
        assert await session.get_items() == [msg(MARKER)]
    assert MARKER.encode() not in stored_bytes(db_path)


@pytest.mark.parametrize(
    "master",
    [
        pytest.param(os.urandom(31), id="31-bytes"),
        pytest.param(b"", id="empty-bytes"),
        pytest.param("", id="empty-str"),
        pytest.param([], id="empty-list"),
        pytest.param([new_key(), ""], id="list-with-empty"),
    ],
)
def test_unusable_master_keys_raise_value_error(db_path: Path, master: MasterKeys) -> None:
    """Short bytes, an empty key and an empty list raise ValueError."""
    underlying = SQLiteSession("s", db_path)
    try:
        with pytest.raises(ValueError, match="key"):
            EncryptedSession("s", underlying, master)
    finally:
        underlying.close()


@pytest.mark.parametrize("master", [12345, None, 1.5, [new_key(), 7]])
def test_master_key_of_the_wrong_type_raises_type_error(db_path: Path, master: object) -> None:
    """A key that is neither str nor bytes (alone or in a list) raises TypeError."""
    underlying = SQLiteSession("s", db_path)
    try:
        with pytest.raises(TypeError):
            EncryptedSession("s", underlying, master)  # type: ignore[arg-type]
    finally:
        underlying.close()


@pytest.mark.parametrize("master", [12345, None])
def test_master_key_of_the_wrong_type_is_named_in_the_error(db_path: Path, master: object) -> None:
    """A lone key of the wrong type raises TypeError saying what encryption_key must be."""
    underlying = SQLiteSession("s", db_path)
    try:
        with pytest.raises(TypeError, match=r"encryption_key must be a key \(str or bytes\)"):
            EncryptedSession("s", underlying, master)  # type: ignore[arg-type]
    finally:
        underlying.close()


# 13. Item validation ---------------------------------------------------------------------------

BAD_ITEMS = [
    pytest.param({"role": "user", "content": {"a", "set"}}, id="set"),
    pytest.param({"role": "user", "content": math.nan}, id="nan"),
    pytest.param({"role": "user", "content": (1, 2)}, id="tuple"),
    pytest.param({1: "int key"}, id="int-key"),
    pytest.param(["not", "a", "dict"], id="list-item"),
]


@pytest.mark.parametrize("bad", BAD_ITEMS)
async def test_bad_item_rejects_the_whole_batch_over_our_session(
    db_path: Path, key: str, bad: object
) -> None:
    """A batch with one unstorable item raises ItemValidationError naming it and stores nothing."""
    async with encrypted(db_path, key) as session:
        await session.add_items([msg("kept")])
        with pytest.raises(ItemValidationError) as raised:
            await session.add_items([msg("x"), bad, msg("y")])  # type: ignore[list-item]
        assert raised.value.index == 1
        assert await session.get_items() == [msg("kept")]
    assert count_rows_sqlite(db_path, "s") == 1


@pytest.mark.parametrize("bad", BAD_ITEMS)
async def test_bad_item_rejects_the_whole_batch_over_the_sdk_session(
    db_path: Path, key: str, bad: object
) -> None:
    """Over agents.SQLiteSession too, a batch with one unstorable item stores nothing."""
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await session.add_items([msg("kept")])
        with pytest.raises(ItemValidationError):
            await session.add_items([msg("x"), bad, msg("y")])  # type: ignore[list-item]
        assert await session.get_items() == [msg("kept")]
    finally:
        session.close()
    assert count_rows_sqlite(db_path, "s") == 1


async def test_bad_batch_creates_no_data_key(db_path: Path, key: str, key_store: KeyStore) -> None:
    """A rejected first batch leaves the key store without a record for the session."""
    async with encrypted(db_path, key, key_store=key_store) as session:
        infinite: object = {"role": "user", "content": math.inf}
        with pytest.raises(ItemValidationError):
            await session.add_items([infinite])  # type: ignore[list-item]
    assert await key_store.load("s") is None


# 14. A foreign (SDK) session underneath --------------------------------------------------------


async def test_round_trip_over_the_sdk_sqlite_session(db_path: Path, key: str) -> None:
    """Over agents.SQLiteSession items round-trip (limits, pop, clear), stored as envelopes."""
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await session.add_items([msg("a"), msg("b"), msg("c")])
        assert {e["__enc__"] for e in envelopes(db_path)} == {"as1"}
        assert await session.get_items() == [msg("a"), msg("b"), msg("c")]
        assert await session.get_items(2) == [msg("b"), msg("c")]
        assert await session.pop_item() == msg("c")
        assert await session.get_items() == [msg("a"), msg("b")]
        await session.clear_session()
        assert await session.get_items() == []
    finally:
        session.close()
    reopened = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await reopened.add_items([msg("d")])
    finally:
        reopened.close()
    reopened = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        assert await reopened.get_items() == [msg("d")]
    finally:
        reopened.close()


async def test_wrong_key_pop_over_the_sdk_session_keeps_the_row(db_path: Path, key: str) -> None:
    """A wrong-key pop over agents.SQLiteSession returns None and leaves the row stored."""
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await session.add_items([msg("a"), msg("b")])
    finally:
        session.close()
    before = envelopes(db_path)
    wrong = EncryptedSession("s", agents.SQLiteSession("s", db_path), new_key())
    try:
        assert await wrong.pop_item() is None
        assert await wrong.get_items() == []
    finally:
        wrong.close()
    assert envelopes(db_path) == before
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        assert await session.get_items() == [msg("a"), msg("b")]
    finally:
        session.close()


async def test_strict_wrong_key_pop_over_the_sdk_session_raises_and_keeps_the_row(
    db_path: Path, key: str
) -> None:
    """A strict wrong-key pop over agents.SQLiteSession raises UnknownKeyError and keeps the row."""
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await session.add_items([msg("a")])
    finally:
        session.close()
    before = envelopes(db_path)
    wrong = EncryptedSession("s", agents.SQLiteSession("s", db_path), new_key(), strict=True)
    try:
        with pytest.raises(UnknownKeyError):
            await wrong.pop_item()
    finally:
        wrong.close()
    assert envelopes(db_path) == before


async def test_expired_items_over_the_sdk_session_are_neither_read_nor_popped(
    db_path: Path, key: str, clock: Clock
) -> None:
    """Over agents.SQLiteSession an expired item is not returned, and pop leaves it stored."""
    start = clock.now
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key, 100, clock=clock)
    try:
        await session.add_items([msg("a")])
        clock.now = start + 101
        assert await session.get_items() == []
        assert await session.pop_item() is None
    finally:
        session.close()
    assert count_rows_sqlite(db_path, "s") == 1


@pytest.mark.parametrize("method", ["purge_expired", "reencrypt"])
async def test_maintenance_over_the_sdk_session_raises_type_error(
    db_path: Path, key: str, method: str
) -> None:
    """purge_expired() and reencrypt() over a foreign session raise TypeError naming the need."""
    session = EncryptedSession("s", agents.SQLiteSession("s", db_path), key)
    try:
        await session.add_items([msg("a")])
        call: Callable[[], Awaitable[int]] = getattr(session, method)
        with pytest.raises(TypeError, match=rf"{method}\(\) needs one of agent_sessions' sessions"):
            await call()
        assert await session.get_items() == [msg("a")]
    finally:
        session.close()


# 15. Lifecycle ---------------------------------------------------------------------------------


async def test_async_with_closes_the_underlying_session(db_path: Path, key: str) -> None:
    """Leaving ``async with`` closes the EncryptedSession and our session underneath."""
    underlying = SQLiteSession("s", db_path)
    async with EncryptedSession("s", underlying, key) as session:
        await session.add_items([msg("a")])
        inside = (session.state, underlying.state)
    assert inside == (SessionState.OPEN, SessionState.OPEN)
    assert (session.state, underlying.state) == (SessionState.CLOSED, SessionState.CLOSED)


_CALLS: list[tuple[str, Callable[[EncryptedSession], Awaitable[object]]]] = [
    ("get_items", lambda s: s.get_items()),
    ("add_items", lambda s: s.add_items([msg("x")])),
    ("pop_item", lambda s: s.pop_item()),
    ("clear_session", lambda s: s.clear_session()),
    ("purge_expired", lambda s: s.purge_expired()),
    ("reencrypt", lambda s: s.reencrypt()),
    ("shred", lambda s: s.shred()),
]


@pytest.mark.parametrize(("name", "call"), _CALLS, ids=[name for name, _ in _CALLS])
async def test_calls_after_close_raise_naming_the_method(
    db_path: Path, key: str, name: str, call: Callable[[EncryptedSession], Awaitable[object]]
) -> None:
    """After aclose() (idempotent) every method raises SessionClosedError naming itself."""
    session = encrypted(db_path, key, key_store=MemoryKeyStore())
    await session.aclose()
    await session.aclose()
    with pytest.raises(SessionClosedError, match=rf"EncryptedSession\.{name}\(\)"):
        await call(session)


async def test_entering_a_closed_session_raises_naming_aenter(db_path: Path, key: str) -> None:
    """``async with`` on a closed EncryptedSession raises SessionClosedError naming __aenter__."""
    session = encrypted(db_path, key)
    await session.aclose()
    with pytest.raises(SessionClosedError, match="__aenter__"):
        async with session:
            pass


async def test_sync_close_closes_our_sqlite_session(db_path: Path, key: str) -> None:
    """close() without awaiting closes the EncryptedSession and our SQLiteSession, idempotently."""
    underlying = SQLiteSession("s", db_path)
    session = EncryptedSession("s", underlying, key)
    await session.add_items([msg("a")])
    session.close()
    session.close()
    assert session.state is SessionState.CLOSED
    assert underlying.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError, match="get_items"):
        await session.get_items()
    async with encrypted(db_path, key) as again:
        assert await again.get_items() == [msg("a")]


async def test_closing_over_a_shared_store_leaves_the_store_open(db_path: Path, key: str) -> None:
    """Closing an EncryptedSession over store.session() leaves the shared store serving others."""
    async with SQLiteStore(db_path) as store:
        async with EncryptedSession("a", store.session("a"), key) as a:
            await a.add_items([msg("a")])
        async with EncryptedSession("b", store.session("b"), key) as b:
            await b.add_items([msg("b")])
            assert await b.get_items() == [msg("b")]
        async with EncryptedSession("a", store.session("a"), key) as a:
            assert await a.get_items() == [msg("a")]


# 16. Session settings --------------------------------------------------------------------------


async def test_session_settings_are_the_underlying_sessions(db_path: Path, key: str) -> None:
    """session_settings reads and writes the underlying session's, and its limit caps get_items."""
    underlying = SQLiteSession("s", db_path, session_settings={"limit": 1})
    async with EncryptedSession("s", underlying, key) as session:
        await session.add_items([msg("a"), msg("b"), msg("c")])
        assert session.session_settings is underlying.session_settings
        assert await session.get_items() == [msg("c")]
        session.session_settings = SessionSettings(limit=2)
        assert underlying.session_settings == SessionSettings(limit=2)
        assert await session.get_items() == [msg("b"), msg("c")]
        assert await session.get_items(3) == [msg("a"), msg("b"), msg("c")]
        session.session_settings = None
        assert await session.get_items() == [msg("a"), msg("b"), msg("c")]


async def test_session_settings_limit_applies_over_the_sdk_session(db_path: Path, key: str) -> None:
    """Over agents.SQLiteSession the underlying settings' limit caps get_items too."""
    underlying = agents.SQLiteSession("s", db_path, session_settings=SessionSettings(limit=2))
    session = EncryptedSession("s", underlying, key)
    try:
        await session.add_items([msg("a"), msg("b"), msg("c")])
        assert await session.get_items() == [msg("b"), msg("c")]
        assert await session.get_items(1) == [msg("c")]
    finally:
        session.close()


# 17. Other sessions of this package underneath -------------------------------------------------


async def test_works_over_advanced_sqlite_session(db_path: Path, key: str, clock: Clock) -> None:
    """Over AdvancedSQLiteSession items round-trip encrypted, and maintenance works."""
    start = clock.now
    underlying = AdvancedSQLiteSession(session_id="s", db_path=db_path)
    async with EncryptedSession("s", underlying, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("old"), msg(MARKER)])
        clock.now = start + 50
        await session.add_items([msg("b")])
        assert await session.get_items() == [msg("old"), msg(MARKER), msg("b")]
        assert await session.pop_item() == msg("b")
        clock.now = start + 120
        assert await session.purge_expired() == 2
    assert MARKER.encode() not in stored_bytes(db_path)
    assert count_rows_sqlite(db_path, "s") == 0


async def test_purge_over_advanced_sqlite_session_leaves_no_branch_metadata(
    db_path: Path, key: str, clock: Clock
) -> None:
    """purge_expired() over AdvancedSQLiteSession also deletes the purged rows' branch metadata."""
    start = clock.now
    underlying = AdvancedSQLiteSession(session_id="s", db_path=db_path)
    async with EncryptedSession("s", underlying, key, ttl=100, clock=clock) as session:
        await session.add_items([msg("a"), msg("b")])
        clock.now = start + 101
        assert await session.purge_expired() == 2
    conn = sqlite3.connect(db_path)
    try:
        (orphans,) = conn.execute(
            "SELECT count(*) FROM message_structure "
            "WHERE message_id NOT IN (SELECT id FROM agent_messages)"
        ).fetchone()
    finally:
        conn.close()
    assert orphans == 0


async def test_reencrypt_works_over_advanced_sqlite_session(db_path: Path, key: str) -> None:
    """reencrypt() over AdvancedSQLiteSession moves its rows to the new key."""
    async with EncryptedSession(
        "s", AdvancedSQLiteSession(session_id="s", db_path=db_path), key
    ) as s:
        await s.add_items([msg("a"), msg("b")])
    rotated_key = new_key()
    underlying = AdvancedSQLiteSession(session_id="s", db_path=db_path)
    async with EncryptedSession("s", underlying, [rotated_key, key]) as rotated:
        assert await rotated.reencrypt() == 2
    underlying = AdvancedSQLiteSession(session_id="s", db_path=db_path)
    async with EncryptedSession("s", underlying, rotated_key, strict=True) as only_new:
        assert await only_new.get_items() == [msg("a"), msg("b")]


async def test_works_over_a_shared_sqlite_store_session(db_path: Path, key: str) -> None:
    """Sessions from one SQLiteStore keep their items apart and encrypted, maintenance included."""
    async with SQLiteStore(db_path) as store:
        a = EncryptedSession("a", store.session("a"), key)
        b = EncryptedSession("b", store.session("b"), key)
        async with a, b:
            await asyncio.gather(a.add_items([msg("a1"), msg("a2")]), b.add_items([msg(MARKER)]))
            assert await a.get_items() == [msg("a1"), msg("a2")]
            assert await b.get_items() == [msg(MARKER)]
            assert await a.pop_item() == msg("a2")
            assert await b.purge_expired() == 0
    assert MARKER.encode() not in stored_bytes(db_path)
    assert count_rows_sqlite(db_path, "a") == 1


# 18. Concurrency -------------------------------------------------------------------------------


async def test_concurrent_first_writes_create_one_data_key(
    tmp_path: Path, db_path: Path, key: str
) -> None:
    """Ten tasks adding batches at once create exactly one data key, and every item is readable."""
    keys_path = tmp_path / "keys.db"
    async with encrypted(db_path, key, key_store=keys_path) as session:
        batches = [[msg(f"{task}-{i}") for i in range(3)] for task in range(10)]
        await asyncio.gather(*(session.add_items(batch) for batch in batches))
        items = await session.get_items()
    assert sorted(items, key=repr) == sorted((i for b in batches for i in b), key=repr)
    assert len(key_records(keys_path)) == 1
    assert len({e["kid"] for e in envelopes(db_path)}) == 1
    async with encrypted(db_path, key, key_store=keys_path, strict=True) as reader:
        assert len(await reader.get_items()) == 30


async def test_two_objects_racing_to_create_a_data_key_agree(
    tmp_path: Path, db_path: Path, key: str
) -> None:
    """Two objects of one session, each with its own key store on one file, share one data key."""
    keys_path = tmp_path / "keys.db"
    first = encrypted(db_path, key, key_store=keys_path)
    second = encrypted(db_path, key, key_store=keys_path)
    async with first, second:
        await asyncio.gather(first.add_items([msg("one")]), second.add_items([msg("two")]))
        assert sorted(await first.get_items(), key=repr) == [msg("one"), msg("two")]
        assert sorted(await second.get_items(), key=repr) == [msg("one"), msg("two")]
    assert len(key_records(keys_path)) == 1
    assert len({e["kid"] for e in envelopes(db_path)}) == 1


# 19. Through the Agents SDK's Runner -----------------------------------------------------------


async def test_runner_remembers_a_name_through_an_encrypted_session(
    db_path: Path, key: str
) -> None:
    """Runner.run with an EncryptedSession recalls a name across two runs, storing it encrypted."""
    agent: Agent[None] = Agent(name="Assistant", instructions="Be brief.", model=OfflineModel())
    offline = RunConfig(tracing_disabled=True)
    async with encrypted(db_path, key) as session:
        await Runner.run(agent, "Hi, my name is Zebraquartz", session=session, run_config=offline)
    async with encrypted(db_path, key) as session:
        result = await Runner.run(agent, "What is my name?", session=session, run_config=offline)
        assert str(result.final_output) == "Your name is Zebraquartz."
        assert len(await session.get_items()) == 4
    assert b"Zebraquartz" not in stored_bytes(db_path)
