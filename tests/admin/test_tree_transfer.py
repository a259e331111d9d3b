"""Export and import carry advanced sessions' branch trees (format version 2), on real databases."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import AdvancedSQLiteSession, SQLiteSession
from agent_sessions.admin import EXPORT_VERSION, ExportFormatError, SessionDatabase
from agent_sessions.admin.records import NO_CUTOFF
from agent_sessions.backends.advanced import segments
from agent_sessions.serialization import JsonCodec
from tests.admin.trees import AdvancedSession, grow_tree, observe, server_tables

JSON = JsonCodec()
TREE = "tree"


async def advanced_file(path: Path) -> dict[str, Any]:
    """A file with a grown tree ("tree") and a plain session's rows ("plain"); what "tree" reads."""
    async with AdvancedSQLiteSession(session_id=TREE, db_path=path) as session:
        await grow_tree(session)
        seen = await observe(session)
    async with SQLiteSession("plain", path) as plain:
        await plain.add_items([{"role": "user", "content": "no branch here"}])
    return seen


def records(path: Path) -> list[dict[str, Any]]:
    """The export file's records, parsed."""
    return [JSON.decode(line) for line in path.read_text().splitlines()]  # type: ignore[misc]


def write_records(path: Path, found: list[dict[str, Any]]) -> None:
    """Write records back as an export file's lines."""
    path.write_text("".join(JSON.encode(record) + "\n" for record in found))  # type: ignore[arg-type]


@asynccontextmanager
async def sqlite_target(
    path: Path, sessions: str = "agent_sessions", messages: str = "agent_messages"
) -> AsyncIterator[tuple[SessionDatabase, Any]]:
    """A SQLite file destination, and AdvancedSQLiteSession on the same tables."""
    async with SessionDatabase(
        path, create=True, sessions_table=sessions, messages_table=messages
    ) as db:
        yield (
            db,
            lambda: AdvancedSQLiteSession(
                session_id=TREE, db_path=path, sessions_table=sessions, messages_table=messages
            ),
        )


@asynccontextmanager
async def server_target(kind: str) -> AsyncIterator[tuple[SessionDatabase, Any]]:
    """Fresh tables on a server, and AdvancedSQLAlchemySession on them."""
    async with (
        server_tables(kind) as tables,
        SessionDatabase(
            tables.url,
            sessions_table=tables.sessions,
            messages_table=tables.messages,
            create=True,
        ) as db,
    ):
        yield db, lambda: tables.session(TREE)


async def another_pairs_file(path: Path) -> None:
    """A file whose SDK structure tables belong to the default pair of tables."""
    async with AdvancedSQLiteSession(session_id="other", db_path=path) as session:
        await session.add_items([{"role": "user", "content": "the file's first pair"}])


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("sqlite-own-tables", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
async def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SessionDatabase, Any]]:
    """A destination of each kind: a new SQLite file, a second pair's tables, PostgreSQL, MariaDB.

    The second pair is in a file whose SDK tables another pair owns, so the tree goes to its
    own copies (``<messages>_structure``...).
    """
    kind: str = request.param
    if kind == "sqlite":
        opened = sqlite_target(tmp_path / "copy.db")
    elif kind == "sqlite-own-tables":
        await another_pairs_file(tmp_path / "copy.db")
        opened = sqlite_target(tmp_path / "copy.db", "pair_sessions", "pair_messages")
    else:
        opened = server_target(kind)
    async with opened as found:
        yield found


async def test_no_cutoff_is_the_branch_logics() -> None:
    """The admin layer's "no cutoff" is the value the branch logic uses."""
    assert NO_CUTOFF == segments.NO_CUTOFF


async def test_a_tree_survives_export_and_import_and_exports_the_same_bytes(
    tmp_path: Path, target: tuple[SessionDatabase, Callable[[], AdvancedSession]]
) -> None:
    """Imports the whole tree: the session reads the same, and it exports the same bytes."""
    source = tmp_path / "source.db"
    seen = await advanced_file(source)
    first, again = tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    async with SessionDatabase(source) as db:
        exported = await db.export_jsonl(first)
    db, open_session = target
    imported = await db.import_jsonl(first)
    await db.export_jsonl(again)
    async with open_session() as session:
        assert await observe(session) == seen
        with pytest.raises(ValueError, match="never reused"):
            await session.create_branch_from_turn(1, "doomed")  # reserved: deleted, not free
    assert again.read_bytes() == first.read_bytes()
    if db.path is not None and db.tables.messages == "pair_messages":  # the pair's own copies
        conn = sqlite3.connect(db.path)
        try:
            count = conn.execute("SELECT count(*) FROM pair_messages_structure").fetchone()[0]
        finally:
            conn.close()
        assert count > 0
    assert (exported.sessions, exported.trees) == (2, 1)  # "plain" has no branch rows
    assert (imported.sessions, imported.trees) == (2, 1)


async def test_the_export_of_an_advanced_file_lists_its_tree_and_provenance(
    tmp_path: Path,
) -> None:
    """Lists branches, records, usage and state after each session's items, items by index.

    The tree was written by ``Runner.run``, so its items carry provenance: version 4.
    """
    source = tmp_path / "source.db"
    await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    found = records(tmp_path / "out.jsonl")
    assert found[0] == {"format": "agent-sessions-export", "version": 4}
    assert EXPORT_VERSION == 4
    tagged = [r for r in found if r.get("type") == "item" and r.get("run_id")]
    assert tagged
    assert all(r["agent_name"] in (None, "assistant") for r in tagged), tagged[:2]
    start = next(i for i, r in enumerate(found) if r.get("session_id") == TREE)
    session = found[
        start : next(i for i, r in enumerate(found) if r.get("type") == "end" and i > start) + 1
    ]
    kinds = [r["type"] for r in session]
    order = ["session", "item", "branch", "record", "usage", "state", "end"]
    assert kinds == sorted(kinds, key=order.index)
    items = kinds.count("item")
    branches = {r["branch_id"]: r for r in session if r["type"] == "branch"}
    assert list(branches) == ["main", "retry", "deeper", "orphan", "kept"]  # creation order
    assert branches["main"]["parent_id"] is None
    assert branches["orphan"]["parent_id"] == "main"  # re-parented when "doomed" went
    assert all(r["cutoff"] is None or 0 <= r["cutoff"] <= items for r in branches.values())
    state = session[-2]
    assert state["current"] == "deeper"
    assert {"doomed", "retry", "kept"} <= set(state["reserved"])
    assert all(0 <= r["item"] < items for r in session if r["type"] == "record")
    assert session[-1]["records"] == len(session) - items - 2


async def test_a_plain_database_still_exports_version_1(tmp_path: Path) -> None:
    """A database without branch tables is exported as version 1: no tree, no new keys."""
    path = tmp_path / "plain.db"
    async with SQLiteSession("u", path) as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    async with SessionDatabase(path) as db:
        report = await db.export_jsonl(tmp_path / "out.jsonl")
    found = records(tmp_path / "out.jsonl")
    assert found[0] == {"format": "agent-sessions-export", "version": 1}
    assert [r["type"] for r in found[1:]] == ["session", "item", "end", "footer"]
    assert list(found[3]) == ["type", "session_id", "items", "sha256"]
    assert report.trees == 0


async def test_a_version_1_file_imports_into_an_advanced_file(tmp_path: Path) -> None:
    """Imports a version 1 file's items into a file with branch tables; they show on main."""
    plain, advanced = tmp_path / "plain.db", tmp_path / "advanced.db"
    async with SQLiteSession("u", plain) as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    async with SessionDatabase(plain) as db:
        await db.export_jsonl(tmp_path / "v1.jsonl")
    await another_pairs_file(advanced)
    async with SessionDatabase(advanced) as db:
        await db.import_jsonl(tmp_path / "v1.jsonl")
    async with AdvancedSQLiteSession(session_id="u", db_path=advanced) as session:
        assert await session.get_items() == [{"role": "user", "content": "hi"}]
        assert [b["branch_id"] for b in await session.list_branches()] == ["main"]


async def test_replacing_a_session_replaces_its_tree(tmp_path: Path) -> None:
    """``replace`` leaves none of the old branches: the session is the file's, tree and all."""
    source, copy = tmp_path / "source.db", tmp_path / "copy.db"
    seen = await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        await session.add_items([{"role": "user", "content": "stale"}])
        await session.create_branch_from_turn(1, "stale-branch")
    async with SessionDatabase(copy) as db:
        report = await db.import_jsonl(tmp_path / "out.jsonl", on_conflict="replace")
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        assert await observe(session) == seen
    assert report.replaced == [TREE]


async def test_skipping_a_session_skips_its_tree(tmp_path: Path) -> None:
    """``skip`` keeps the existing session and its tree, and imports the others."""
    source, copy = tmp_path / "source.db", tmp_path / "copy.db"
    await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        await session.add_items([{"role": "user", "content": "kept"}])
        before = await observe(session)
    async with SessionDatabase(copy) as db:
        report = await db.import_jsonl(tmp_path / "out.jsonl", on_conflict="skip")
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        assert await observe(session) == before
    assert (report.skipped, report.sessions) == ([TREE], 1)


def _edit(found: list[dict[str, Any]], kind: str, change: Callable[[dict[str, Any]], None]) -> None:
    change(next(r for r in found if r.get("type") == kind and r.get("branch_id") != "main"))


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("a moved cutoff", lambda f: _edit(f, "branch", lambda r: r.update(cutoff=0))),
        ("another parent", lambda f: _edit(f, "branch", lambda r: r.update(parent_id="kept"))),
        ("a record's item", lambda f: _edit(f, "record", lambda r: r.update(item=0))),
        ("more tokens", lambda f: _edit(f, "usage", lambda r: r.update(total_tokens=1))),
        ("another current branch", lambda f: _edit(f, "state", lambda r: r.update(current="main"))),
        ("an extra key", lambda f: _edit(f, "record", lambda r: r.update(note="x"))),
        ("a cut record", lambda f: f.remove(next(r for r in f if r.get("type") == "record"))),
        ("a cut state", lambda f: f.remove(next(r for r in f if r.get("type") == "state"))),
    ],
)
async def test_an_edited_tree_is_refused_before_anything_is_written(
    tmp_path: Path, name: str, change: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Refuses a file whose tree records were edited or cut: the checksum covers them."""
    source = tmp_path / "source.db"
    await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    found = records(tmp_path / "out.jsonl")
    change(found)
    write_records(tmp_path / "edited.jsonl", found)
    async with SessionDatabase(tmp_path / "copy.db", create=True) as db:
        with pytest.raises(ExportFormatError, match="checksum"):
            await db.import_jsonl(tmp_path / "edited.jsonl")
    assert not (tmp_path / "copy.db").exists(), name


@pytest.mark.parametrize(
    ("version", "tree", "message"),
    [
        (
            1,
            {
                "type": "branch",
                "branch_id": "b",
                "parent_id": None,
                "cutoff": 0,
                "created_at": None,
            },
            "found 'branch'",
        ),
        (
            2,
            {
                "type": "record",
                "item": 1,
                "branch_id": "main",
                "message_type": "user",
                "sequence": 1,
                "turn": 1,
                "branch_turn": 1,
                "tool_name": None,
                "created_at": None,
            },
            "index of one of the session's 1 items",
        ),
        (
            2,
            {
                "type": "branch",
                "branch_id": "b",
                "parent_id": None,
                "cutoff": 2,
                "created_at": None,
            },
            "'cutoff' must be a whole number from 0 to 1",
        ),
        (
            2,
            {
                "type": "branch",
                "branch_id": "b",
                "parent_id": None,
                "cutoff": True,
                "created_at": None,
            },
            "'cutoff' must be a whole number",
        ),
        (
            2,
            {
                "type": "usage",
                "branch_id": "main",
                "turn": -1,
                "requests": 1,
                "input_tokens": 1,
                "output_tokens": 1,
                "total_tokens": 2,
                "input_tokens_details": None,
                "output_tokens_details": None,
                "created_at": None,
            },
            "'turn' must be a whole number",
        ),
        (
            2,
            {"type": "state", "current": "main", "generation": None, "reserved": ["a", "a"]},
            "lists a branch id twice",
        ),
        (
            2,
            {"type": "state", "current": "ma\x00in", "generation": None, "reserved": []},
            "NUL character",
        ),
        (
            2,
            {
                "type": "branch",
                "branch_id": "b",
                "parent_id": None,
                "cutoff": None,
                "created_at": "noon",
            },
            "not a timestamp",
        ),
    ],
)
async def test_a_malformed_tree_record_is_refused_with_its_line(
    tmp_path: Path, version: int, tree: dict[str, Any], message: str
) -> None:
    """Refuses a tree record a version 1 file cannot hold, or with a field out of range."""
    lines: list[dict[str, Any]] = [
        {"format": "agent-sessions-export", "version": version},
        {"type": "session", "session_id": "u", "created_at": None, "updated_at": None},
        {"type": "item", "created_at": None, "data": '{"role":"user","content":"hi"}'},
        tree,
        {"type": "end", "session_id": "u", "items": 1, "records": 1, "sha256": "0"},
        {"type": "footer", "sessions": 1, "items": 1},
    ]
    write_records(tmp_path / "bad.jsonl", lines)
    async with SessionDatabase(tmp_path / "copy.db", create=True) as db:
        with pytest.raises(ExportFormatError, match="line 4") as refused:
            await db.import_jsonl(tmp_path / "bad.jsonl")
    assert message in str(refused.value)
    assert not (tmp_path / "copy.db").exists()


async def test_tree_records_out_of_order_are_refused(tmp_path: Path) -> None:
    """Refuses an item after the tree, or a branch after the records."""
    source = tmp_path / "source.db"
    await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    found = records(tmp_path / "out.jsonl")
    branch = next(i for i, r in enumerate(found) if r.get("type") == "branch")
    record = next(i for i, r in enumerate(found) if r.get("type") == "record")
    found[branch], found[record] = found[record], found[branch]
    write_records(tmp_path / "swapped.jsonl", found)
    async with SessionDatabase(tmp_path / "copy.db", create=True) as db:
        with pytest.raises(ExportFormatError, match="found 'branch', expected 'record'"):
            await db.import_jsonl(tmp_path / "swapped.jsonl")


async def test_a_file_the_sdk_wrote_exports_its_tree_without_writing(tmp_path: Path) -> None:
    """Exports the SDK class's branches and usage (its file lacks two tables) and imports them."""
    from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSession

    path = tmp_path / "sdk.db"
    sdk = SDKAdvancedSession(session_id="sdk-1", db_path=path, create_tables=True)
    try:
        await sdk.add_items(
            [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ]
        )
        await sdk.create_branch_from_turn(2, "retry")
        await sdk.add_items([{"role": "user", "content": "second, reworded"}])
    finally:
        sdk.close()
    before = path.read_bytes()
    async with SessionDatabase(path) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    assert path.read_bytes() == before
    async with SessionDatabase(tmp_path / "copy.db", create=True) as db:
        await db.import_jsonl(tmp_path / "out.jsonl")
    async with (
        AdvancedSQLiteSession(session_id="sdk-1", db_path=path) as original,
        AdvancedSQLiteSession(session_id="sdk-1", db_path=tmp_path / "copy.db") as copy,
    ):
        # (our class on the SDK's file adds our two tables: read it after the export)
        assert await observe(copy) == await observe(original)


@pytest.mark.parametrize("made_by", ["plain", "sdk"])
async def test_importing_a_tree_adds_the_branch_tables_to_an_existing_file(
    tmp_path: Path, made_by: str
) -> None:
    """Creates the missing branch tables in a plain or an SDK file opened without ``create``."""
    from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSession

    source, copy = tmp_path / "source.db", tmp_path / "copy.db"
    seen = await advanced_file(source)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl", session_ids=[TREE])
    if made_by == "plain":
        async with SQLiteSession("other", copy) as plain:
            await plain.add_items([{"role": "user", "content": "already here"}])
    else:
        sdk = SDKAdvancedSession(session_id="other", db_path=copy, create_tables=True)
        try:
            await sdk.add_items([{"role": "user", "content": "already here"}])
        finally:
            sdk.close()
    async with SessionDatabase(copy) as db:  # an existing file: the sync engine
        await db.import_jsonl(tmp_path / "out.jsonl")
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        assert await observe(session) == seen
    async with AdvancedSQLiteSession(session_id="other", db_path=copy) as other:
        assert await other.get_items() == [{"role": "user", "content": "already here"}]
