"""``agent-sessions show`` of an ``EncryptedSession``: rows by key id, or decrypted (--key-env)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import (
    AdvancedSQLAlchemySession,
    AdvancedSQLiteSession,
    EncryptedSession,
    SQLAlchemySession,
    SQLiteSession,
)
from agent_sessions.cli import main
from agent_sessions.encryption.crypto import parse_master_key
from tests.sql_servers import POSTGRES_URL, database_url, drop_tables, unique_tables

KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
SECRET = "the launch code is 1234"  # noqa: S105 - a test item, not a credential
WRITES: list[tuple[str | list[str], str]] = [(OLD_KEY, "older"), ([KEY, OLD_KEY], SECRET)]
"""A row under OLD_KEY, then one under KEY after a rotation (KEY first, OLD_KEY still read)."""


@dataclass(frozen=True)
class Stored:
    """Where the encrypted session was written, and the CLI arguments that reach it."""

    args: list[str]


async def _write(session: object, key: str | list[str], text: str) -> None:
    encrypted = EncryptedSession("s", session, key, ttl=None)  # type: ignore[arg-type]
    async with encrypted:
        await encrypted.add_items([{"role": "user", "content": text}])


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("advanced-sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("advanced-postgres", marks=pytest.mark.postgres),
    ]
)
async def stored(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stored]:
    """One session with a row under OLD_KEY, then one under KEY, on the parameter's backend."""
    kind: str = request.param
    if kind.endswith("sqlite"):
        path = tmp_path / "enc.db"
        cls = AdvancedSQLiteSession if kind.startswith("advanced") else SQLiteSession
        for key, text in WRITES:
            await _write(cls(session_id="s", db_path=path), key, text)
        yield Stored([str(path)])
        return
    url = database_url("postgres", tmp_path)
    sessions, messages = unique_tables()
    sql = AdvancedSQLAlchemySession if kind.startswith("advanced") else SQLAlchemySession
    tables = {"sessions_table": sessions, "messages_table": messages}
    for key, text in WRITES:
        await _write(sql.from_url("s", url=url, create_tables=True, **tables), key, text)
    yield Stored([url, "--sessions-table", sessions, "--messages-table", messages])
    engine = create_async_engine(POSTGRES_URL)
    await drop_tables(engine, sessions, messages)
    await engine.dispose()


def _show(capsys: pytest.CaptureFixture[str], stored: Stored, *extra: str) -> str:
    assert main(["show", *stored.args, "s", *extra]) == 0
    return capsys.readouterr().out


def test_without_key_counts_rows_by_key_id(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --key-env, show says how many rows are encrypted under which key id, no text."""
    out = _show(capsys, stored)
    old, new = parse_master_key(OLD_KEY).kid, parse_master_key(KEY).kid
    assert f"encrypted: 2 row(s) under key id {old} (1), {new} (1)" in out
    assert SECRET not in out


def test_key_env_decrypts_and_reports_rows_the_key_does_not_open(
    stored: Stored, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--key-env shows the items its key opens; the other key's row is undecryptable, no data."""
    monkeypatch.setenv("SHOW_KEY", KEY)
    out = _show(capsys, stored, "--key-env", "SHOW_KEY")
    old = parse_master_key(OLD_KEY).kid
    assert SECRET in out
    assert f"undecryptable: 1 row(s) the given key(s) do not open, under key id {old} (1)" in out
    assert "older" not in out
    assert KEY not in out


def test_key_env_repeated_opens_rows_of_rotated_keys(
    stored: Stored, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--key-env given twice (newest first) opens the rows of both keys, as a rotation list."""
    monkeypatch.setenv("NEW", KEY)
    monkeypatch.setenv("OLD", OLD_KEY)
    out = _show(capsys, stored, "--key-env", "NEW", "--key-env", "OLD")
    assert SECRET in out
    assert "older" in out
    assert "undecryptable" not in out


def test_json_with_wrong_key_has_no_item_for_undecryptable_rows(
    stored: Stored, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a wrong key, show --json marks every row undecryptable with its key id, no item."""
    monkeypatch.setenv("WRONG", Fernet.generate_key().decode())
    document = json.loads(_show(capsys, stored, "--json", "--key-env", "WRONG"))
    items = document["items"]
    assert [item["kind"] for item in items] == ["undecryptable", "undecryptable"]
    assert all("item" not in item and "data" not in item for item in items)
    assert [item["key_id"] for item in items] == [
        parse_master_key(OLD_KEY).kid,
        parse_master_key(KEY).kid,
    ]
    assert document["encryption"]["encrypted"] == 2
    assert document["encryption"]["decrypted"] == 0


def test_json_with_key_has_the_decrypted_item(
    stored: Stored, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the key, show --json gives the decrypted item of the row that key sealed."""
    monkeypatch.setenv("SHOW_KEY", KEY)
    document = json.loads(_show(capsys, stored, "--json", "--key-env", "SHOW_KEY"))
    newest = document["items"][-1]
    assert newest["item"] == {"role": "user", "content": SECRET}
    assert newest["key_id"] == parse_master_key(KEY).kid
    assert document["encryption"]["decrypted"] == 1


def test_unset_key_env_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--key-env naming an unset variable fails with a message naming it."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "a.db"
    SQLiteSession("s", path).close()
    assert main(["show", str(path), "s", "--key-env", "NOT_SET_ANYWHERE"]) == 1
    assert "--key-env NOT_SET_ANYWHERE: that environment variable is not set" in (
        capsys.readouterr().err
    )


def test_sdk_format_rows_decrypt_with_the_same_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows in the SDK's envelope (format="sdk") are counted under hkdf-v1 and open with the key."""
    path = tmp_path / "sdk.db"

    async def write() -> None:
        encrypted = EncryptedSession("s", SQLiteSession("s", path), KEY, ttl=None, format="sdk")
        async with encrypted:
            await encrypted.add_items([{"role": "user", "content": SECRET}])

    asyncio.run(write())
    stored = Stored([str(path)])
    assert "under key id hkdf-v1 (1)" in _show(capsys, stored)
    monkeypatch.setenv("SHOW_KEY", KEY)
    assert SECRET in _show(capsys, stored, "--key-env", "SHOW_KEY")


def _write_with_key_store(tmp_path: Path) -> tuple[Path, Path]:
    path, keys = tmp_path / "ks.db", tmp_path / "keys.db"

    async def write() -> None:
        session = SQLiteSession("s", path)
        async with EncryptedSession("s", session, KEY, ttl=None, key_store=keys) as encrypted:
            await encrypted.add_items([{"role": "user", "content": SECRET}])

    asyncio.run(write())
    return path, keys


def test_key_store_rows_open_with_key_store_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows under a key store data key: undecryptable with the key alone, shown with --key-store."""
    path, keys = _write_with_key_store(tmp_path)
    before = keys.stat().st_mtime_ns
    monkeypatch.setenv("SHOW_KEY", KEY)
    stored = Stored([str(path)])
    alone = _show(capsys, stored, "--key-env", "SHOW_KEY")
    assert SECRET not in alone
    assert "undecryptable: 1 row(s)" in alone
    assert SECRET in _show(capsys, stored, "--key-env", "SHOW_KEY", "--key-store", str(keys))
    assert keys.stat().st_mtime_ns == before  # read only


def test_key_store_with_a_wrong_key_or_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--key-store with a key that did not wrap the data key, or no such file, fails clearly."""
    path, keys = _write_with_key_store(tmp_path)
    monkeypatch.setenv("WRONG", OLD_KEY)
    assert main(["show", str(path), "s", "--key-env", "WRONG", "--key-store", str(keys)]) == 1
    assert "none of the given keys is" in capsys.readouterr().err
    missing = tmp_path / "nope.db"
    assert main(["show", str(path), "s", "--key-env", "WRONG", "--key-store", str(missing)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not missing.exists()
