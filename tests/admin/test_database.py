"""The admin API (``agent_sessions.admin``) on real databases: SQLite files, PostgreSQL, MariaDB."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import (
    AdvancedSQLiteSession,
    InvalidIdentifierError,
    SessionClosedError,
    SQLAlchemySession,
    SQLiteSession,
    StorageError,
    StorageUnavailableError,
)
from agent_sessions.admin import (
    ExportFormatError,
    SessionDatabase,
    SessionExistsError,
    SessionNotFoundError,
    migrate,
    parse_age,
)
from agent_sessions.admin.rows import StoredRow
from agent_sessions.admin.show import describe, render_entries
from agent_sessions.cli.progress import ProgressBar
from tests.sql_servers import database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
SERVERS = KINDS[1:]


def turn(text_: str, city: str = "Paris") -> list[dict[str, Any]]:
    """One exchange in the benchmark's mix: user, tool call, tool output, assistant."""
    return [
        {"role": "user", "content": text_},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": f'{{"c":"{city}"}}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": f"Sunny in {city}"},
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": f"It is sunny in {city}."}],
        },
    ]


@dataclass
class Store:
    """One database of the kind under test, reached both through our API and through raw SQL."""

    kind: str
    target: str
    url: str
    sessions: str = "agent_sessions"
    messages: str = "agent_messages"
    engines: list[AsyncEngine] = field(default_factory=list)

    def open(self, *, create: bool = False) -> SessionDatabase:
        """The admin view of this database."""
        return SessionDatabase(
            self.target, sessions_table=self.sessions, messages_table=self.messages, create=create
        )

    async def add(self, session_id: str, items: list[dict[str, Any]]) -> None:
        """Store items through the session class an application would use."""
        if self.kind == "sqlite":
            async with SQLiteSession(session_id, self.target) as lite:
                await lite.add_items(items)  # type: ignore[arg-type]
            return
        async with SQLAlchemySession.from_url(
            session_id,
            url=self.url,
            create_tables=True,
            sessions_table=self.sessions,
            messages_table=self.messages,
        ) as session:
            await session.add_items(items)  # type: ignore[arg-type]

    def _engine(self) -> AsyncEngine:
        if not self.engines:
            self.engines.append(create_async_engine(self.url))
        return self.engines[0]

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run raw SQL (``{s}`` and ``{m}`` name the tables) and return any rows."""
        query = text(statement.format(s=self.sessions, m=self.messages))
        async with self._engine().begin() as conn:
            result = await conn.execute(query, params)
            return list(result.all()) if result.returns_rows else []

    async def age(self, session_id: str, days: int) -> None:
        """Make a session, record and rows, look ``days`` old in the database's own clock."""
        ago = {
            "sqlite": "datetime('now', :modifier)",
            "postgres": "LOCALTIMESTAMP - make_interval(days => :days)",
            "mariadb": "NOW() - INTERVAL :days DAY",
        }[self.kind]
        params = {"sid": session_id, "days": days, "modifier": f"-{days} days"}
        await self.sql(
            f"UPDATE {{s}} SET created_at = {ago}, updated_at = {ago} WHERE session_id = :sid",
            **params,
        )
        await self.sql(f"UPDATE {{m}} SET created_at = {ago} WHERE session_id = :sid", **params)

    async def texts(self, session_id: str) -> list[str]:
        """A session's stored texts, oldest first, as the database holds them."""
        rows = await self.sql(
            "SELECT message_data FROM {m} WHERE session_id = :sid ORDER BY id", sid=session_id
        )
        return [row[0] for row in rows]

    async def drop(self) -> None:
        """Drop a server's tables; release the raw engine."""
        if self.kind != "sqlite":
            await drop_tables(self._engine(), self.sessions, self.messages)
        for engine in self.engines:
            await engine.dispose()


StoreFactory = Callable[[], Store]


@pytest.fixture
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Makes fresh, empty databases of the parametrized kind; server tables are dropped after."""
    kind: str = request.param
    made: list[Store] = []

    def make() -> Store:
        number = len(made)
        if kind == "sqlite":
            path = tmp_path / f"store{number}.db"
            store = Store(kind, str(path), f"sqlite+aiosqlite:///{path}")
        else:
            url = database_url(kind, tmp_path)
            sessions, messages = unique_tables()
            store = Store(kind, url, url, sessions, messages)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.drop()


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Callable[[str], Store]]:
    """Makes SQLite stores by file name in the test's directory; their engines are released."""
    made: list[Store] = []

    def make(name: str) -> Store:
        path = tmp_path / name
        made.append(Store("sqlite", str(path), f"sqlite+aiosqlite:///{path}"))
        return made[-1]

    yield make
    for store in made:
        await store.drop()


Lite = Callable[[str], Store]


async def filled(make: StoreFactory) -> Store:
    """A database with sessions "a" (two turns), "b" (one turn) and "c" (one item)."""
    store = make()
    await store.add("a", turn("Hi, I'm Ada; the weather in Paris?") + turn("And Köln?", "Köln"))
    await store.add("b", turn("Weather in PARIS please"))
    await store.add("c", [{"role": "user", "content": "50% off_sale"}])
    return store


# The catalogue ---------------------------------------------------------------------------


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_lists_sessions_with_counts_sizes_and_activity(stores: StoreFactory) -> None:
    """Lists every session with its item count, stored bytes and first/last activity."""
    store = await filled(stores)
    async with store.open() as db:
        infos = {info.session_id: info for info in await db.list_sessions()}
    assert sorted(infos) == ["a", "b", "c"]
    assert [infos[s].items for s in "abc"] == [8, 4, 1]
    for sid in "abc":
        texts = await store.texts(sid)
        assert infos[sid].bytes == sum(len(t.encode()) for t in texts)
        first, last = infos[sid].first_activity, infos[sid].last_activity
        assert first is not None
        assert last is not None
        assert first <= last


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_filters_by_prefix_size_and_age(stores: StoreFactory) -> None:
    """Filters by id prefix (wildcards taken literally), item count, and age of last activity."""
    store = stores()
    for sid in ("a_1", "ab", "a%x", "old"):
        await store.add(sid, turn("hello"))
    await store.add("ab", turn("more"))
    await store.age("old", 40)
    async with store.open() as db:
        by_prefix = [i.session_id for i in await db.list_sessions(prefix="a_")]
        big = [i.session_id for i in await db.list_sessions(min_items=5)]
        stale = [i.session_id for i in await db.list_sessions(older_than=timedelta(days=30))]
        fresh = [i.session_id for i in await db.list_sessions(newer_than=timedelta(days=30))]
        counted = await db.count_sessions(newer_than=timedelta(days=30))
    assert by_prefix == ["a_1"]
    assert big == ["ab"]
    assert stale == ["old"]
    assert sorted(fresh) == ["a%x", "a_1", "ab"]
    assert counted == 3


@pytest.mark.parametrize("stores", KINDS[:1], indirect=True)
async def test_sorts_and_pages(stores: StoreFactory) -> None:
    """Sorts by size, largest first, and pages with limit and offset."""
    store = await filled(stores)
    async with store.open() as db:
        first = await db.list_sessions(sort="items", descending=True, limit=2)
        rest = await db.list_sessions(sort="items", descending=True, limit=2, offset=2)
    assert [i.session_id for i in first + rest] == ["a", "b", "c"]


@pytest.mark.sqlite
async def test_lists_a_session_whose_rows_have_no_record(tmp_path: Path) -> None:
    """Lists a session that has rows but no session record (rows written by hand)."""
    path = tmp_path / "db.sqlite"
    async with SQLiteSession("real", path) as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO agent_messages (session_id, message_data) VALUES ('orphan', '{}')"
        )
    conn.close()
    async with SessionDatabase(path) as db:
        orphan = await db.session("orphan")
    assert (orphan.items, orphan.created_at) == (1, None)
    assert orphan.last_activity is not None


@pytest.mark.sqlite
async def test_unknown_session_is_an_error(lite: Lite) -> None:
    """Raises SessionNotFoundError (a LookupError) naming a session that does not exist."""
    store = lite("x.db")
    await store.add("a", turn("hi"))
    async with store.open() as db:
        with pytest.raises(SessionNotFoundError, match="'nope'") as caught:
            await db.rows("nope")
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_rows_are_the_stored_texts_newest_last(stores: StoreFactory) -> None:
    """Returns a session's stored texts unchanged, oldest first; ``limit`` keeps the newest."""
    store = await filled(stores)
    async with store.open() as db:
        every = await db.rows("a")
        newest = await db.rows("a", limit=3)
    assert [row.text for row in every] == await store.texts("a")
    assert newest == every[-3:]


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_searches_every_session_case_insensitively(stores: StoreFactory) -> None:
    """Finds items containing a term in any session, whatever its case, even non-ASCII."""
    store = await filled(stores)
    async with store.open() as db:
        paris = {(hit.session_id, hit.text) for hit in await db.search("paris")}
        koln = await db.search("KÖLN")
        literal = await db.search("0% off_")
    assert {sid for sid, _ in paris} == {"a", "b"}
    assert all("paris" in data.lower() for _, data in paris)
    assert {hit.session_id for hit in koln} == {"a"}
    assert [hit.session_id for hit in literal] == ["c"]


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_search_matches_what_was_said_not_json_keys(stores: StoreFactory) -> None:
    """A term found only in JSON keys or type names ("role", "output_text") matches no row."""
    store = await filled(stores)
    async with store.open() as db:
        by_key = await db.search("role")
        by_type = await db.search("output_text")
        by_text = await db.search("sunny")
    assert by_key == []
    assert by_type == []
    assert by_text
    assert all("sunny" in hit.text.lower() for hit in by_text)


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_search_pages_past_rows_that_match_only_by_key(stores: StoreFactory) -> None:
    """The one row that says "role" is found behind 300 rows that hold it only as a key."""
    store = stores()
    await store.add("d", [{"role": "user", "content": f"hello {n}"} for n in range(300)])
    await store.add("d", [{"role": "user", "content": "my role is admin"}])
    async with store.open() as db:
        found = await db.search("role", limit=1)
        sunny = await db.search("hello", limit=2)
    assert [hit.text for hit in found] == (await store.texts("d"))[-1:]
    assert [hit.text for hit in sunny] == (await store.texts("d"))[:2]


# Statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_stats_count_the_store(stores: StoreFactory) -> None:
    """Reports sessions, items, bytes, the largest sessions and today's growth."""
    store = await filled(stores)
    texts = [t for sid in "abc" for t in await store.texts(sid)]
    async with store.open() as db:
        stats = await db.stats(top=2, days=3)
    assert (stats.sessions, stats.items) == (3, 13)
    assert stats.data_bytes == sum(len(t.encode()) for t in texts)
    assert [info.session_id for info in stats.largest] == ["a", "b"]
    assert len(stats.per_day) == 3
    assert (stats.per_day[-1].items, stats.per_day[-1].bytes) == (13, stats.data_bytes)
    assert stats.size_bytes is not None
    assert stats.size_bytes > 0


@pytest.mark.sqlite
async def test_stats_count_old_items_on_their_day(lite: Lite) -> None:
    """Counts items written on an earlier day under that day."""
    store = lite("x.db")
    await store.add("old", turn("then"))
    await store.add("new", turn("now"))
    await store.age("old", 2)
    async with store.open() as db:
        stats = await db.stats(days=5)
    assert [day.items for day in stats.per_day] == [0, 0, 4, 0, 4]


# Export and import -----------------------------------------------------------------------


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_export_import_export_gives_identical_bytes(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """Exports, imports into an empty database, and exports the same bytes again."""
    store = await filled(stores)
    await store.sql(
        "INSERT INTO {m} (session_id, message_data) VALUES ('c', :bad)", bad='{"truncated": '
    )
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    async with store.open() as db:
        await db.export_jsonl(first)
    target = stores()
    async with target.open(create=True) as db:
        imported = await db.import_jsonl(first)
        await db.export_jsonl(second)
    assert (imported.sessions, imported.items) == (3, 14)
    assert second.read_bytes() == first.read_bytes()
    assert await target.texts("c") == await store.texts("c")


@pytest.mark.parametrize("stores", SERVERS, indirect=True)
async def test_export_moves_between_sqlite_and_a_server(
    stores: StoreFactory, lite: Lite, tmp_path: Path
) -> None:
    """An export of a SQLite file imports into a server and exports back byte for byte."""
    source = lite("lite.db")
    await source.add("a", turn("Grüße aus Köln", "Köln"))
    await source.add("b", turn("hi"))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    async with source.open() as db:
        await db.export_jsonl(first)
    server = stores()
    async with server.open(create=True) as db:
        await db.import_jsonl(first)
        await db.export_jsonl(second)
    assert second.read_bytes() == first.read_bytes()


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _names(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


@pytest.mark.sqlite
async def test_export_of_an_unknown_session_writes_no_file(lite: Lite, tmp_path: Path) -> None:
    """Refuses to export a session that does not exist, and leaves no file behind."""
    store = lite("x.db")
    await store.add("a", turn("hi"))
    out = _directory(tmp_path / "exports") / "out.jsonl"
    async with store.open() as db:
        with pytest.raises(SessionNotFoundError, match="'ghost'"):
            await db.export_jsonl(out, ["a", "ghost"])
    assert _names(out.parent) == []


@pytest.mark.sqlite
async def test_an_unwritable_export_is_an_os_error_not_a_database_error(
    lite: Lite, tmp_path: Path
) -> None:
    """Reports an export path that cannot be written as the OSError it is, naming the path."""
    store = lite("x.db")
    await store.add("a", turn("hi"))
    out = tmp_path / "no-such-directory" / "out.jsonl"
    async with store.open() as db:
        with pytest.raises(OSError, match=r"cannot write .*out\.jsonl") as caught:
            await db.export_jsonl(out)
    assert not isinstance(caught.value, StorageError)


@pytest.mark.sqlite
async def test_exports_only_the_named_sessions_to_a_stream(lite: Lite) -> None:
    """Exports just the named sessions, in id order, to an open stream."""
    store = lite("x.db")
    for sid in ("c", "a", "b"):
        await store.add(sid, turn(sid))
    out = io.StringIO()
    async with store.open() as db:
        report = await db.export_jsonl(out, ["c", "a"])
    named = [line for line in out.getvalue().splitlines() if '"type":"session"' in line]
    assert ['"session_id":"a"' in named[0], '"session_id":"c"' in named[1]] == [True, True]
    assert (report.sessions, report.items) == (2, 8)


async def _exported(lite: Lite, tmp_path: Path) -> tuple[Store, Path]:
    store = lite("src.db")
    await store.add("a", turn("first"))
    await store.add("b", turn("second"))
    path = tmp_path / "export.jsonl"
    async with store.open() as db:
        await db.export_jsonl(path)
    return store, path


@pytest.mark.sqlite
async def test_import_refuses_existing_sessions_before_writing(lite: Lite, tmp_path: Path) -> None:
    """Refuses an import that would overwrite a session, and writes none of the others."""
    _, path = await _exported(lite, tmp_path)
    target = lite("dst.db")
    await target.add("b", [{"role": "user", "content": "mine"}])
    async with target.open() as db:
        with pytest.raises(SessionExistsError, match=r"'b'.*--replace"):
            await db.import_jsonl(path)
        names = [info.session_id for info in await db.list_sessions()]
    assert names == ["b"]


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("conflict", "kept"), [("skip", ["mine"]), ("replace", ["second"])], ids=["skip", "replace"]
)
async def test_import_skips_or_replaces_existing_sessions(
    lite: Lite, tmp_path: Path, conflict: str, kept: list[str]
) -> None:
    """Keeps an existing session with ``skip``, and overwrites it whole with ``replace``."""
    _, path = await _exported(lite, tmp_path)
    target = lite("dst.db")
    await target.add("b", [{"role": "user", "content": "mine"}])
    async with target.open() as db:
        report = await db.import_jsonl(path, on_conflict=conflict)  # type: ignore[arg-type]
        users = [row.text for row in await db.rows("b") if '"role":"user"' in row.text]
    assert [text_ for text_ in kept if any(text_ in u for u in users)] == kept
    assert len(users) == 1
    assert report.sessions == (1 if conflict == "skip" else 2)


def _truncate(lines: list[str]) -> list[str]:
    return lines[:-1]


def _alter_item(lines: list[str]) -> list[str]:
    return [line.replace("second", "sec0nd") for line in lines]


def _drop_item(lines: list[str]) -> list[str]:
    return [line for line in lines if "second" not in line]


def _newer_version(lines: list[str]) -> list[str]:
    return [lines[0].replace('"version":1', '"version":99'), *lines[1:]]


def _not_an_export(lines: list[str]) -> list[str]:
    return ['{"role": "user", "content": "hi"}\n']


def _garbage(lines: list[str]) -> list[str]:
    return [*lines[:3], "not json\n", *lines[3:]]


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "truncated"),
        (_alter_item, "checksum"),
        (_drop_item, "checksum"),
        (_newer_version, "newer"),
        (_not_an_export, "not an agent-sessions export"),
        (_garbage, "line 4: not a JSON object"),
    ],
    ids=["truncated", "altered", "item-removed", "newer-version", "not-an-export", "garbage"],
)
async def test_import_refuses_a_damaged_file_and_writes_nothing(
    lite: Lite, tmp_path: Path, damage: Callable[[list[str]], list[str]], message: str
) -> None:
    """Refuses a cut, edited, foreign or newer file with ExportFormatError; writes nothing."""
    _, path = await _exported(lite, tmp_path)
    path.write_text("".join(damage(path.read_text().splitlines(keepends=True))))
    async with SessionDatabase(tmp_path / "dst.db", create=True) as db:
        with pytest.raises(ExportFormatError, match=message):
            await db.import_jsonl(path)
        assert await db.list_sessions() == []


# Migration -------------------------------------------------------------------------------


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_migrate_copies_every_session_exactly(stores: StoreFactory, lite: Lite) -> None:
    """Copies every session from a SQLite file, texts and order unchanged, and says so."""
    source = lite("src.db")
    await source.add("a", turn("Grüße", "Köln") * 3)
    await source.add("b", turn("hi"))
    target = stores()
    async with source.open() as src, target.open(create=True) as dst:
        report = await migrate(src, dst, batch_size=5)
    assert (report.copied, report.items) == (["a", "b"], 16)
    assert await target.texts("a") == await source.texts("a")
    assert await target.texts("b") == await source.texts("b")


async def _migrated(lite: Lite) -> tuple[Store, Store]:
    src = lite("src.db")
    dst = lite("dst.db")
    for sid in ("a", "b", "c"):
        await src.add(sid, turn(sid) * 2)
    async with src.open() as source, dst.open(create=True) as destination:
        await migrate(source, destination)
    return src, dst


@pytest.mark.sqlite
async def test_migrate_again_skips_identical_sessions(lite: Lite) -> None:
    """A second run verifies the copies and copies nothing."""
    src, dst = await _migrated(lite)
    async with src.open() as source, dst.open(create=True) as destination:
        again = await migrate(source, destination)
    assert (again.identical, again.copied, again.items) == (["a", "b", "c"], [], 0)


@pytest.mark.sqlite
async def test_migrate_redoes_a_partial_copy(lite: Lite) -> None:
    """Copies again a session the destination holds only the start of (an interrupted copy)."""
    src, dst = await _migrated(lite)
    await dst.sql(
        "DELETE FROM {m} WHERE id IN "
        "(SELECT id FROM {m} WHERE session_id = 'b' ORDER BY id DESC LIMIT 3)"
    )
    await dst.sql("DELETE FROM {m} WHERE session_id = 'c'")
    async with src.open() as source, dst.open(create=True) as destination:
        report = await migrate(source, destination)
    assert (report.redone, report.identical) == (["b", "c"], ["a"])
    assert await dst.texts("b") == await src.texts("b")


@pytest.mark.sqlite
async def test_migrate_leaves_a_differing_session_unless_replacing(lite: Lite) -> None:
    """Reports a session that differs at the destination and keeps it; ``replace`` overwrites it."""
    src, dst = await _migrated(lite)
    await dst.sql("UPDATE {m} SET message_data = '{{}}' WHERE session_id = 'a'")
    async with src.open() as source, dst.open(create=True) as destination:
        kept = await migrate(source, destination)
        kept_texts = await dst.texts("a")
        replaced = await migrate(source, destination, replace=True)
    assert kept.conflicts == ["a"]
    assert set(kept_texts) == {"{}"}
    assert replaced.replaced == ["a"]
    assert await dst.texts("a") == await src.texts("a")


@pytest.mark.sqlite
async def test_migrate_refuses_to_copy_onto_the_same_tables(lite: Lite, tmp_path: Path) -> None:
    """Refuses to migrate a database onto itself."""
    src = lite("src.db")
    await src.add("a", turn("hi"))
    async with src.open() as source, SessionDatabase(tmp_path / "." / "src.db") as again:
        with pytest.raises(ValueError, match="same tables"):
            await migrate(source, again)


@pytest.mark.sqlite
async def test_migrate_carries_an_advanced_files_branch_tree(tmp_path: Path) -> None:
    """Copies an advanced file's branch tree with the items, and reports it (no note)."""
    async with AdvancedSQLiteSession(session_id="u", db_path=tmp_path / "adv.db") as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    async with (
        SessionDatabase(tmp_path / "adv.db") as src,
        SessionDatabase(tmp_path / "dst.db", create=True) as dst,
    ):
        report = await migrate(src, dst)
    assert (report.copied, report.trees, report.notes) == (["u"], ["u"], [])


# Purge -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stores", KINDS, indirect=True)
async def test_purge_deletes_only_sessions_inactive_for_longer(stores: StoreFactory) -> None:
    """Deletes sessions last active before the age; a new item keeps an old session."""
    store = stores()
    for sid in ("old", "revived", "new"):
        await store.add(sid, turn(sid))
    await store.age("old", 40)
    await store.age("revived", 40)
    await store.add("revived", [{"role": "user", "content": "back again"}])
    async with store.open() as db:
        dry = await db.purge(timedelta(days=30), dry_run=True)
        after_dry = await db.count_sessions()
        report = await db.purge(timedelta(days=30))
        left = [info.session_id for info in await db.list_sessions()]
    assert [info.session_id for info in dry.sessions] == ["old"]
    assert after_dry == 3
    assert ([info.session_id for info in report.sessions], report.items) == (["old"], 4)
    assert left == ["new", "revived"]
    assert await store.texts("old") == []


@pytest.mark.sqlite
async def test_purge_removes_a_sessions_branch_and_usage_rows(lite: Lite, tmp_path: Path) -> None:
    """Deletes an advanced session's branch rows with it, leaving other sessions' rows."""
    path = tmp_path / "adv.db"
    for sid in ("gone", "kept"):
        async with AdvancedSQLiteSession(session_id=sid, db_path=path) as session:
            await session.add_items(turn(sid) * 2)  # type: ignore[arg-type]
            await session.create_branch_from_turn(2, "retry")
    store = lite("adv.db")
    await store.age("gone", 10)
    async with store.open() as db:
        await db.purge(timedelta(days=1))
    owners = await store.sql("SELECT DISTINCT session_id FROM agent_messages_branches")
    assert [row[0] for row in owners] == ["kept"]
    records = await store.sql("SELECT DISTINCT session_id FROM message_structure")
    assert [row[0] for row in records] == ["kept"]


# SQLite files: worker threads ------------------------------------------------------------


@pytest.mark.sqlite
async def test_statements_on_a_sqlite_file_run_off_the_event_loop(lite: Lite) -> None:
    """Runs every statement on a SQLite file on a worker thread, never on the loop's thread."""
    store = lite("s.db")
    await store.add("a", turn("hi"))
    threads: set[int] = set()

    def record(*_: object) -> None:
        threads.add(threading.get_ident())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        async with store.open() as db:
            await db.list_sessions()
            await db.stats()
            await db.purge(timedelta(days=1))
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert threads
    assert threading.get_ident() not in threads


@pytest.mark.sqlite
async def test_two_purges_at_once_on_one_sqlite_file_take_turns(lite: Lite) -> None:
    """Two purges of one SQLite file at once take turns: each old session goes once, promptly."""
    store = lite("s.db")
    for sid in ("old1", "old2", "new"):
        await store.add(sid, turn(sid))
    await store.age("old1", 40)
    await store.age("old2", 40)
    async with store.open() as db:
        # Each transaction has its own thread: one waiting for SQLite's write lock never
        # holds up the one that has it (on a shared thread both would wait the 30 s timeout).
        both = asyncio.gather(db.purge(timedelta(days=30)), db.purge(timedelta(days=30)))
        first, second = await asyncio.wait_for(both, timeout=10)
        left = [info.session_id for info in await db.list_sessions()]
    purged = [info.session_id for info in first.sessions + second.sessions]
    assert sorted(purged) == ["old1", "old2"]
    assert left == ["new"]


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2W", timedelta(weeks=2)),
    ],
)
def test_parses_ages(text_: str, expected: timedelta) -> None:
    """Reads ages in minutes, hours, days and weeks."""
    assert parse_age(text_) == expected


@pytest.mark.parametrize("text_", ["30", "d", "3x", "-1d", "0d", "1.5d", ""])
def test_refuses_malformed_ages(text_: str) -> None:
    """Refuses an age without a whole positive number and a known unit."""
    with pytest.raises(ValueError, match="invalid age"):
        parse_age(text_)


# Errors ----------------------------------------------------------------------------------


@pytest.mark.sqlite
async def test_a_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    """Refuses a SQLite path that does not exist, without creating it."""
    with pytest.raises(StorageUnavailableError, match="no such database file"):
        SessionDatabase(tmp_path / "typo.db")
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.sqlite
async def test_a_file_without_session_tables_is_an_error(tmp_path: Path) -> None:
    """Refuses a SQLite file without the session tables, naming the table."""
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    async with SessionDatabase(path, sessions_table="chats") as db:
        with pytest.raises(StorageError, match="no table chats"):
            await db.list_sessions()


@pytest.mark.sqlite
async def test_a_file_that_is_not_sqlite_is_an_error(tmp_path: Path) -> None:
    """Refuses a file that is not a SQLite database with a StorageError."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just words " * 100)
    async with SessionDatabase(path) as db:
        with pytest.raises(StorageError, match=r"notes\.txt is not a SQLite database"):
            await db.list_sessions()


def test_a_bad_url_is_a_value_error() -> None:
    """Refuses a URL naming no known database with a ValueError."""
    with pytest.raises(ValueError, match="invalid database URL"):
        SessionDatabase("nosuchdb://user@host/db")


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    """Reports a server that refuses connections as StorageUnavailableError, naming it."""
    async with SessionDatabase("postgresql://postgres@127.0.0.1:1/test") as db:
        with pytest.raises(StorageUnavailableError, match=r"127\.0\.0\.1:1"):
            await db.list_sessions()


def test_a_bad_table_name_is_refused(tmp_path: Path) -> None:
    """Refuses a table name that is not a plain identifier, before touching the database."""
    with pytest.raises(InvalidIdentifierError):
        SessionDatabase(tmp_path / "x.db", create=True, sessions_table="x; DROP TABLE y")


@pytest.mark.sqlite
async def test_a_closed_database_refuses_calls(tmp_path: Path) -> None:
    """Raises SessionClosedError, naming the method, after aclose()."""
    db = SessionDatabase(tmp_path / "x.db", create=True)
    await db.aclose()
    await db.aclose()
    with pytest.raises(SessionClosedError, match="list_sessions"):
        await db.list_sessions()


# Rendering and progress ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "label", "body"),
    [
        ({"role": "user", "content": "hi"}, "user", "hi"),
        (
            {"role": "assistant", "content": [{"type": "output_text", "text": "yo"}]},
            "assistant",
            "yo",
        ),
        ({"type": "function_call", "name": "f", "arguments": '{"a":1}'}, "tool call", 'f({"a":1})'),
        ({"type": "function_call_output", "output": "42"}, "tool output", "42"),
        (
            {"type": "function_call", "name": "transfer_to_billing", "arguments": "{}"},
            "handoff",
            "-> billing",
        ),
        (
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
            "reasoning",
            "think",
        ),
        ({"type": "web_search_call", "status": "completed"}, "web search call", "status=completed"),
        ({"__enc__": "as1", "v": "..."}, "encrypted", "(EncryptedSession envelope, 27 characters)"),
    ],
    ids=[
        "user",
        "assistant-parts",
        "tool-call",
        "tool-output",
        "handoff",
        "reasoning",
        "hosted",
        "encrypted",
    ],
)
def test_describes_each_kind_of_item(item: dict[str, Any], label: str, body: str) -> None:
    """Renders each kind of item compactly under its own label."""
    from agent_sessions.serialization import JsonCodec

    entry = describe(JsonCodec().encode(item))  # type: ignore[arg-type]
    assert (entry.label, entry.body) == (label, body)


def test_shows_an_undecodable_row_as_such() -> None:
    """Renders a row that cannot be decoded as undecodable, with the reason, not a crash."""
    lines = render_entries([StoredRow(7, '{"cut', None)], {}, limit=None)
    assert len(lines) == 1
    assert "#7" in lines[0]
    assert "undecodable" in lines[0]
    assert "5 characters stored" in lines[0]


def test_shortens_long_texts_unless_asked() -> None:
    """Cuts a long text to the limit and says how much was left out."""
    row = StoredRow(1, '{"role":"user","content":"' + "x" * 1000 + '"}', "2025-01-01 00:00:00")
    short = render_entries([row], {}, limit=100)[0]
    full = render_entries([row], {}, limit=None)[0]
    assert "(+900 characters; --full shows all)" in short
    assert full.endswith("x" * 1000)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    """On a terminal, redraws in place with a carriage return and ends the line when closed."""
    now = [0.0]
    out = _Terminal()
    bar = ProgressBar("migrate", stream=out, clock=lambda: now[0])
    for done in (0, 500, 1000):
        now[0] += 1.0
        bar(done, 1000)
    bar.close()
    written = out.getvalue()
    assert written.count("\r") == 4
    assert written.endswith("\n")
    assert "100.0%" in written
    assert "1,000/1,000 items" in written
    assert "0:03 elapsed" in written


def test_progress_bar_keeps_its_width_as_numbers_change() -> None:
    """On a terminal, the bar itself has the same width at the start, midway and at the end."""
    now = [0.0]
    bar = ProgressBar("migrate", stream=_Terminal(), clock=lambda: now[0])
    widths = set()
    for done in (0, 7, 4_321, 99_999, 100_000):
        now[0] += 3.0
        bar(done, 100_000)
        drawn = bar.line()
        widths.add(drawn.index("]") - drawn.index("["))
    assert len(widths) == 1


def test_progress_is_an_occasional_plain_line_off_a_terminal() -> None:
    """Off a terminal, writes a plain line at most every ten seconds, and none for short work."""
    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar("import", stream=out, clock=lambda: now[0])
    for step in range(1, 31):
        now[0] = step  # one update per second for 30 s
        bar(step, 30)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("import: ") and "\r" not in line for line in lines)
    quiet = io.StringIO()
    short = ProgressBar("import", stream=quiet, clock=lambda: 0.5)
    short(1, 1)
    short.close()
    assert quiet.getvalue() == ""
