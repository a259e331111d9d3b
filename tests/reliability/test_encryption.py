"""EncryptedSession against someone who can write to the database but holds no key.

Rows are edited with plain ``sqlite3``: bits flipped in the ciphertext, nonce or tag, times and
key ids changed, envelopes cut short or extended, characters replaced at random, rows swapped,
copied or moved between sessions, deleted rows put back, rows read with the wrong key or after
their TTL. None of it may come back as data, and ``pop_item`` may remove none of it. The one
thing not protected (docs/encryption.md, "Not protected") is a deleted row put back into its own
session within its TTL: rows are authenticated one by one, not as a sequence.
"""

from __future__ import annotations

import binascii
import json
import random
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest
from agents.items import TResponseInputItem
from cryptography.fernet import Fernet

from agent_sessions import (
    DecryptionError,
    EncryptedSession,
    SQLiteSession,
    UnknownKeyError,
)

pytestmark = [pytest.mark.reliability, pytest.mark.sqlite, pytest.mark.slow]

KEY = Fernet.generate_key().decode()
TTL = 60
T0 = 1_000_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        """The time the test set."""
        return self.now


def item(n: int, session: str = "a") -> TResponseInputItem:
    """The ``n``-th item of a session."""
    return cast(TResponseInputItem, {"role": "user", "content": f"{session} says {n}"})


def open_encrypted(
    path: Path, session_id: str = "a", key: str = KEY, clock: Clock | None = None, **kw: Any
) -> EncryptedSession:
    """An EncryptedSession over our SQLiteSession on ``path``."""
    options: dict[str, Any] = {"ttl": TTL, **kw}
    if clock is not None:
        options["clock"] = clock
    return EncryptedSession(session_id, SQLiteSession(session_id, path), key, **options)


class Raw:
    """The attacker's view of the file: rows by id, edited without any key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def rows(self, session_id: str = "a") -> list[tuple[int, str]]:
        """A session's rows, ``(id, text)``, oldest first."""
        return self._run(
            "SELECT id, message_data FROM agent_messages WHERE session_id = ? ORDER BY id",
            (session_id,),
        )

    def set(self, row_id: int, text: str) -> None:
        """Overwrite a row's text."""
        self._run("UPDATE agent_messages SET message_data = ? WHERE id = ?", (text, row_id))

    def insert(self, session_id: str, text: str) -> None:
        """Append a row to a session."""
        self._run(
            "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
            (session_id, text),
        )

    def move(self, row_id: int, session_id: str) -> None:
        """Give a row to another session."""
        self._run("UPDATE agent_messages SET session_id = ? WHERE id = ?", (session_id, row_id))


# Tampering -------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def _with(envelope: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**envelope, **changes}, separators=(",", ":"))


def tamper(text: str, rng: random.Random) -> str:
    """One random edit of an envelope that changes what it authenticates."""
    envelope = json.loads(text)
    blob = bytearray(binascii.a2b_base64(envelope["ct"]))
    kind = rng.randrange(7)
    if kind <= 2:  # a bit of the nonce, the ciphertext or the tag
        region = [(0, 12), (12, len(blob) - 16), (len(blob) - 16, len(blob))][kind]
        position = rng.randrange(*region)
        blob[position] ^= 1 << rng.randrange(8)
        return _with(envelope, ct=_b64(bytes(blob)))
    if kind == 3:
        return _with(envelope, ts=envelope["ts"] + rng.choice([-1, 1]) * rng.randrange(1, 10**6))
    if kind == 4:
        return _with(envelope, kid=rng.choice(["", "x", envelope["kid"][::-1] + "A"]))
    if kind == 5:
        cut = rng.randrange(len(blob))
        return _with(envelope, ct=_b64(bytes(blob[:cut])))
    extra = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    return _with(envelope, ct=_b64(bytes(blob) + extra))


def authenticated_parts(text: str) -> tuple[object, ...] | None:
    """What an envelope authenticates (version, key id, time, ciphertext bytes), or None."""
    try:
        envelope = json.loads(text)
        return (
            envelope["__enc__"],
            envelope["kid"],
            envelope["ts"],
            binascii.a2b_base64(envelope["ct"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def scribble(text: str, rng: random.Random) -> str:
    """Replace one character of the row's text, anywhere, with a random printable one."""
    position = rng.randrange(len(text))
    new = chr(rng.randrange(32, 127))
    while new == text[position]:
        new = chr(rng.randrange(32, 127))
    return text[:position] + new + text[position + 1 :]


async def test_tampered_rows_are_never_returned_or_popped(tmp_path: Path) -> None:
    """600 random edits of stored envelopes: 0 tampered items returned, 0 deleted.

    300 edits of what the envelope authenticates (a bit of the nonce, ciphertext or tag, the
    time, the key id, truncation, extension) are each skipped; 300 single-character edits
    anywhere in the row either leave the authenticated bytes as they were, and the original item
    comes back unchanged, or are skipped. A strict read raises DecryptionError. With 10 rows
    tampered at once, pop_item returns the 30 others newest first and leaves the 10.
    """
    path = tmp_path / "tamper.db"
    raw = Raw(path)
    rng = random.Random(7)
    items = [item(n) for n in range(40)]
    async with open_encrypted(path) as session:
        await session.add_items(items)
        rows = raw.rows()
        harmless = 0
        for trial in range(600):
            index = rng.randrange(len(rows))
            row_id, original = rows[index]
            edited = tamper(original, rng) if trial % 2 == 0 else scribble(original, rng)
            raw.set(row_id, edited)
            back = await session.get_items()
            without = items[:index] + items[index + 1 :]
            if authenticated_parts(edited) == authenticated_parts(original):
                harmless += 1
                assert back in (items, without), f"edit {edited!r} changed the item"
            else:
                assert back == without, f"edit {edited!r} came back as data"
            if trial % 50 == 0 and back == without:
                strict = open_encrypted(path, strict=True)
                with pytest.raises(DecryptionError):
                    await strict.get_items()
                await strict.aclose()
            raw.set(row_id, original)
        assert harmless < 60, "most single-character edits should change authenticated bytes"

        doomed = set(rng.sample(range(len(rows)), 10))
        for index in doomed:
            raw.set(rows[index][0], tamper(rows[index][1], rng))
        kept = [it for index, it in enumerate(items) if index not in doomed]
        assert await session.get_items() == kept
        assert [await session.pop_item() for _ in kept] == kept[::-1]
        assert await session.pop_item() is None
        assert len(raw.rows()) == 10


async def test_rows_swapped_copied_or_moved_between_sessions_are_never_returned(
    tmp_path: Path,
) -> None:
    """Two sessions, one key: 40 rows swapped, 20 copied and 20 moved across: 0 returned.

    Each session reads only its own untouched rows; a strict read raises DecryptionError; pops
    never return or remove a foreign row.
    """
    path = tmp_path / "swap.db"
    raw = Raw(path)
    async with open_encrypted(path, "a") as a, open_encrypted(path, "b") as b:
        await a.add_items([item(n, "a") for n in range(20)])
        await b.add_items([item(n, "b") for n in range(20)])
        rows_a, rows_b = raw.rows("a"), raw.rows("b")
        for (id_a, text_a), (id_b, text_b) in zip(rows_a, rows_b, strict=True):
            raw.set(id_a, text_b)
            raw.set(id_b, text_a)
        assert await a.get_items() == []
        assert await b.get_items() == []
        strict = open_encrypted(path, "a", strict=True)
        with pytest.raises(DecryptionError, match="failed authentication"):
            await strict.get_items()
        await strict.aclose()
        assert await a.pop_item() is None
        assert await b.pop_item() is None
        assert len(raw.rows("a")) == len(raw.rows("b")) == 20

        for (id_a, text_a), (id_b, text_b) in zip(rows_a, rows_b, strict=True):  # put them back
            raw.set(id_a, text_a)
            raw.set(id_b, text_b)
        await b.clear_session()
        await b.add_items([item(n, "b") for n in range(20)])
        for _, text in rows_a:
            raw.insert("b", text)  # copies of a's rows appended to b
        for row_id, _ in raw.rows("a"):
            raw.move(row_id, "c")  # a's rows moved to a third session
        c = open_encrypted(path, "c")
        assert await b.get_items() == [item(n, "b") for n in range(20)]
        assert await c.get_items() == []
        assert await c.pop_item() is None
        assert len(raw.rows("c")) == 20
        await c.aclose()


async def test_replayed_deleted_row_only_within_its_session_and_ttl(tmp_path: Path) -> None:
    """A popped row put back: returned in its own session within TTL, nowhere else, never after.

    This is the documented limit (rows are authenticated one by one, not their sequence): 20
    replays into the own session within the TTL come back as the original items; 20 into
    another session and 20 after the TTL come back 0 times.
    """
    path = tmp_path / "replay.db"
    raw = Raw(path)
    clock = Clock()
    async with (
        open_encrypted(path, "a", clock=clock) as a,
        open_encrypted(path, "b", clock=clock) as b,
    ):
        await a.add_items([item(n) for n in range(20)])
        stolen = raw.rows("a")
        assert [await a.pop_item() for _ in range(20)] == [item(n) for n in range(19, -1, -1)]
        assert raw.rows("a") == []

        await b.add_items([item(0, "b")])
        for _, text in stolen:
            raw.insert("b", text)
        assert await b.get_items() == [item(0, "b")]

        for _, text in stolen:
            raw.insert("a", text)
        clock.now = T0 + TTL
        assert await a.get_items() == [item(n) for n in range(20)]  # the documented limit
        clock.now = T0 + TTL + 1
        assert await a.get_items() == []
        assert await a.pop_item() is None
        assert len(raw.rows("a")) == 20


async def test_rows_under_a_wrong_key_are_never_returned_or_popped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 rows read with a wrong key: 0 returned, 0 popped, 0 deleted, a warning per read.

    A strict read raises UnknownKeyError, a write under the wrong key is refused before
    anything is stored, and the right key then reads and pops its items.
    """
    path = tmp_path / "keys.db"
    async with open_encrypted(path) as right:
        await right.add_items([item(n) for n in range(20)])
    wrong_key = Fernet.generate_key().decode()
    async with open_encrypted(path, key=wrong_key) as wrong:
        caplog.clear()
        assert await wrong.get_items() == []
        assert any("not among the configured keys" in r.getMessage() for r in caplog.records)
        assert await wrong.pop_item() is None
        assert len(Raw(path).rows()) == 20
        strict = open_encrypted(path, key=wrong_key, strict=True)
        with pytest.raises(UnknownKeyError):
            await strict.get_items()
        await strict.aclose()
        with pytest.raises(UnknownKeyError, match="refusing to write"):
            await wrong.add_items([item(99)])
        assert len(Raw(path).rows()) == 20
    async with open_encrypted(path) as right:
        assert await right.get_items() == [item(n) for n in range(20)]
        assert await right.pop_item() == item(19)
    assert len(Raw(path).rows()) == 19


async def test_expired_items_are_never_returned_or_popped(tmp_path: Path) -> None:
    """10 of 20 items past their TTL: 0 returned (strict too), 0 popped, kept until purged.

    An item is readable for exactly ``ttl`` seconds after it was written.
    """
    path = tmp_path / "ttl.db"
    clock = Clock()
    raw = Raw(path)
    async with open_encrypted(path, clock=clock) as session:
        await session.add_items([item(n) for n in range(10)])
        clock.now = T0 + 30
        await session.add_items([item(n) for n in range(10, 20)])
        clock.now = T0 + TTL
        assert await session.get_items() == [item(n) for n in range(20)]
        clock.now = T0 + TTL + 1
        fresh = [item(n) for n in range(10, 20)]
        assert await session.get_items() == fresh
        assert await session.get_items(15) == fresh
        strict = open_encrypted(path, clock=clock, strict=True)
        assert await strict.get_items() == fresh
        await strict.aclose()
        assert [await session.pop_item() for _ in range(10)] == fresh[::-1]
        assert await session.pop_item() is None
        assert len(raw.rows()) == 10
        clock.now = T0 + 10 * TTL
        assert await session.get_items() == []
        assert await session.purge_expired() == 10
        assert raw.rows() == []
