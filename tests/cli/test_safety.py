"""Operator tools never destroy and always fail clearly: export, import, purge, escaping, demo."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.admin import ExportFormatError, SessionDatabase, parse_age
from agent_sessions.admin.render import search_lines, session_table
from agent_sessions.admin.rows import StoredRow
from agent_sessions.admin.show import describe, render_entries
from agent_sessions.admin.text import one_line, printable
from tests.conftest import count_rows_sqlite, require_server, write_raw_sqlite
from tests.sql_servers import POSTGRES_URL, drop_tables, unique_tables

HOSTILE = "hi \x1b]52;c;aGVsbG8=\x07 \x1b[2J\x1b]0;title\x07 \x9b31m \u202eevil\x7f"
"""Text that, printed raw, writes the clipboard, clears the screen, retitles the window."""
RAW_CONTROLS = ["\x1b", "\x07", "\x9b", "\u202e", "\x7f"]


def item(text: str) -> dict[str, Any]:
    """A user message."""
    return {"role": "user", "content": text}


async def make_db(path: Path, sessions: dict[str, list[str]]) -> Path:
    """A SQLite session file holding the given sessions' user messages."""
    for session_id, texts in sessions.items():
        async with SQLiteSession(session_id, path) as session:
            await session.add_items([item(t) for t in texts])  # type: ignore[misc]
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The CLI's environment: no API key unless given, UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``agent-sessions`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "agent_sessions.cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(**env),
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """The command failed with ``status``, one error line containing ``text``, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert text in errors[0], result.stderr
    if status == 1:
        assert result.stderr.count("\n") == 1, result.stderr


def names(directory: Path) -> list[str]:
    """The names in a directory, sorted."""
    return sorted(entry.name for entry in directory.iterdir())


def cut_file(export: Path, path: Path) -> Path:
    """A copy of an export without its footer line."""
    path.write_text("".join(export.read_text().splitlines(keepends=True)[:-1]))
    return path


def deep_file(export: Path, path: Path) -> Path:
    """An export's header followed by a line nested 100,000 deep."""
    first = export.read_text(encoding="utf-8").splitlines()[0]
    path.write_text(first + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    return path


def header(path: Path) -> bytes:
    """The first 16 bytes of a file."""
    return path.read_bytes()[:16]


def export_lines(path: Path) -> list[dict[str, Any]]:
    """An export file's records."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, records: list[Any]) -> Path:
    """Write records as an export file (unchecked)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
async def exported(tmp_path: Path) -> Path:
    """A valid export of two sessions, "a" and "b"."""
    db = await make_db(tmp_path / "src.db", {"a": ["one", "two"], "b": ["three"]})
    out = tmp_path / "good.jsonl"
    async with SessionDatabase(db) as admin:
        await admin.export_jsonl(out)
    return out


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[str, str]]:
    """Fresh table names on the PostgreSQL server; dropped afterwards."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    names = unique_tables()
    yield names
    engine = create_async_engine(POSTGRES_URL)
    try:
        await drop_tables(engine, *names)
    finally:
        await engine.dispose()


async def postgres_tables(names: tuple[str, str]) -> set[str]:
    """Which of the given tables exist on the PostgreSQL server."""
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            present = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return present & set(names)


# Export: never over the database, never over a file unasked, never through a link ---------


@pytest.mark.sqlite
@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
async def test_export_refuses_to_overwrite_the_database_it_exports(
    tmp_path: Path, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refuses an export onto the source database, however its path is spelled, even forced."""
    db = await make_db(tmp_path / "live.db", {"a": ["one"]})
    before = db.read_bytes()
    monkeypatch.chdir(tmp_path)
    target = {"same": db, "relative": Path("./live.db"), "symlink": tmp_path / "link.db"}[spelling]
    if spelling == "symlink":
        target.symlink_to(db)
    async with SessionDatabase(db) as admin:
        with pytest.raises(FileExistsError, match="it is the database being exported"):
            await admin.export_jsonl(target)
        with pytest.raises(FileExistsError, match="it is the database being exported"):
            await admin.export_jsonl(target, overwrite=True)
    assert db.read_bytes() == before
    assert count_rows_sqlite(db, "a") == 1
    assert [name for name in names(tmp_path) if name.startswith(".")] == []


@pytest.mark.sqlite
async def test_export_refuses_any_sqlite_file_even_when_forced(tmp_path: Path) -> None:
    """Refuses to write an export over another SQLite database or its write-ahead log."""
    db = await make_db(tmp_path / "src.db", {"a": ["one"]})
    other = await make_db(tmp_path / "other.db", {"z": ["keep me"]})
    wal = tmp_path / "other.db-wal"
    wal.write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    async with SessionDatabase(db) as admin:
        for target in (other, wal):
            with pytest.raises(FileExistsError, match="SQLite database"):
                await admin.export_jsonl(target)
            with pytest.raises(FileExistsError, match="SQLite database"):
                await admin.export_jsonl(target, overwrite=True)
    assert header(other) == b"SQLite format 3\x00"
    assert count_rows_sqlite(other, "z") == 1


@pytest.mark.sqlite
async def test_export_replaces_an_existing_file_only_when_told(tmp_path: Path) -> None:
    """Refuses to replace an existing file; with ``overwrite`` replaces it, keeping its mode."""
    db = await make_db(tmp_path / "src.db", {"a": ["one"]})
    out = tmp_path / "out.jsonl"
    out.write_text("precious notes\n")
    out.chmod(0o644)
    async with SessionDatabase(db) as admin:
        with pytest.raises(FileExistsError, match="the file exists"):
            await admin.export_jsonl(out)
        assert out.read_text() == "precious notes\n"
        await admin.export_jsonl(out, overwrite=True)
    assert export_lines(out)[0]["format"] == "agent-sessions-export"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


@pytest.mark.sqlite
async def test_a_new_export_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Creates a new export file with mode 0600 whatever the umask."""
    db = await make_db(tmp_path / "src.db", {"a": ["one"]})
    old = os.umask(0o022)
    try:
        async with SessionDatabase(db) as admin:
            await admin.export_jsonl(tmp_path / "new.jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o600


@pytest.mark.sqlite
async def test_export_never_follows_a_link_planted_at_a_temporary_name(tmp_path: Path) -> None:
    """Leaves a victim file alone when a symlink to it waits at ``FILE.partial``."""
    db = await make_db(tmp_path / "src.db", {"a": ["one"]})
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").symlink_to(victim)
    async with SessionDatabase(db) as admin:
        await admin.export_jsonl(out)
    assert victim.read_text() == "do not touch\n"
    assert not out.is_symlink()
    assert export_lines(out)[-1] == {"type": "footer", "sessions": 1, "items": 1}


@pytest.mark.sqlite
async def test_a_failed_export_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    """Leaves neither a partial export nor a temporary file, and an existing file unchanged."""
    db = await make_db(tmp_path / "src.db", {"a": ["one"], "b": ["two"]})
    out = tmp_path / "out.jsonl"
    out.write_text("old export\n")
    before = names(tmp_path)

    def fail(done: int, total: int) -> None:
        raise KeyboardInterrupt

    async with SessionDatabase(db) as admin:
        with pytest.raises(KeyboardInterrupt):
            await admin.export_jsonl(out, overwrite=True, progress=fail)
    assert names(tmp_path) == before
    assert out.read_text() == "old export\n"


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_server_export_refuses_an_existing_sqlite_file(
    tmp_path: Path, postgres: tuple[str, str]
) -> None:
    """Refuses to export a PostgreSQL database over a SQLite file, or over a file unasked."""
    sessions, messages = postgres
    async with SQLAlchemySession.from_url(
        "pg-a",
        url=POSTGRES_URL,
        create_tables=True,
        sessions_table=sessions,
        messages_table=messages,
    ) as session:
        await session.add_items([item("one")])  # type: ignore[list-item]
    lite = await make_db(tmp_path / "lite.db", {"z": ["keep"]})
    text_file = tmp_path / "notes.txt"
    text_file.write_text("keep\n")
    url = POSTGRES_URL.replace("+asyncpg", "")
    refused, not_forced, forced = (
        run("export", url, *t, "--sessions-table", sessions, "--messages-table", messages)
        for t in (
            ["-o", str(lite), "--force"],
            ["-o", str(text_file)],
            ["-o", str(text_file), "--force"],
        )
    )
    assert_one_line_error(refused, 1, "is a SQLite database")
    assert_one_line_error(not_forced, 1, "--force replaces it")
    assert forced.returncode == 0, forced.stderr
    assert count_rows_sqlite(lite, "z") == 1
    assert export_lines(text_file)[1]["session_id"] == "pg-a"


@pytest.mark.slow
@pytest.mark.sqlite
async def test_cli_export_onto_the_database_is_refused_and_the_database_survives(
    tmp_path: Path,
) -> None:
    """Exits 1 with one line for ``export DB -o DB``; the database still opens with its rows."""
    db = await make_db(tmp_path / "live.db", {"a": ["one", "two"]})
    result = run("export", str(db), "-o", str(db))
    assert_one_line_error(result, 1, "it is the database being exported")
    async with SQLiteSession("a", db) as session:
        assert len(await session.get_items()) == 2


# Ages that overflow the calendar ---------------------------------------------------------


@pytest.mark.parametrize("text_", ["99999999999999999999d", "999999999d", "36526d", "99999999w"])
def test_refuses_ages_beyond_a_hundred_years(text_: str) -> None:
    """Refuses an age longer than 100 years with a ValueError naming the limit."""
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_age(text_)


def test_accepts_an_age_of_a_hundred_years() -> None:
    """Accepts 36525 days, the longest age."""
    assert parse_age("36525d") == timedelta(days=36525)


@pytest.mark.sqlite
async def test_overlong_ages_from_python_are_value_errors(tmp_path: Path) -> None:
    """Refuses a timedelta that would overflow the calendar in every age filter and in purge."""
    db = await make_db(tmp_path / "s.db", {"a": ["one"]})
    huge = timedelta(days=999_999_999)
    async with SessionDatabase(db) as admin:
        with pytest.raises(ValueError, match="older_than must be at most 100 years"):
            await admin.purge(huge)
        with pytest.raises(ValueError, match="older_than must be at most 100 years"):
            await admin.list_sessions(older_than=huge)
        with pytest.raises(ValueError, match="newer_than must be at most 100 years"):
            await admin.count_sessions(newer_than=huge)
    assert count_rows_sqlite(db, "a") == 1


@pytest.mark.postgres
async def test_overlong_ages_are_refused_on_postgres(postgres: tuple[str, str]) -> None:
    """Refuses an overlong age on PostgreSQL too, before any query (no DataError)."""
    sessions, messages = postgres
    url = POSTGRES_URL
    async with SessionDatabase(
        url, sessions_table=sessions, messages_table=messages, create=True
    ) as admin:
        with pytest.raises(ValueError, match="at most 100 years"):
            await admin.purge(timedelta(days=999_999_999), dry_run=True)
        with pytest.raises(ValueError, match="at most 100 years"):
            await admin.list_sessions(newer_than=timedelta.max)


@pytest.mark.slow
@pytest.mark.sqlite
async def test_cli_purge_with_an_overlong_age_is_one_line(tmp_path: Path) -> None:
    """Exits 2 with one error line and no traceback for ages that overflowed, deleting nothing."""
    db = await make_db(tmp_path / "s.db", {"a": ["one"]})
    for age in ("99999999999999999999d", "999999999d"):
        result = run("purge", str(db), "--older-than", age)
        assert_one_line_error(result, 2, "at most 100 years")
    assert count_rows_sqlite(db, "a") == 1


# Import: the whole file is checked before anything, even the database file, is created ---


BAD_TIMES = ["not a time", "9999-99-99 99:99:99", ""]


@pytest.mark.sqlite
@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize("record", [1, 2])
async def test_import_refuses_a_bad_timestamp_naming_the_line(
    tmp_path: Path, exported: Path, bad: str, record: int
) -> None:
    """Refuses a record whose created_at is not a time, naming its line; creates nothing."""
    records = export_lines(exported)
    records[record]["created_at"] = bad
    broken = write_lines(tmp_path / "bad.jsonl", records)
    target = tmp_path / "new.db"
    async with SessionDatabase(target, create=True) as admin:
        with pytest.raises(ExportFormatError, match=rf"line {record + 1}: 'created_at' is not a"):
            await admin.import_jsonl(broken)
    assert not target.exists()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("session_id", "a\x00b", "NUL"),
        ("session_id", "a\ud800", "lone surrogate"),
        ("data", '{"role":"user","content":"x"}\x00', "NUL"),
        ("data", '{"role":"user","content":"\ud800"}', "lone surrogate"),
    ],
)
async def test_import_refuses_text_no_database_stores(
    tmp_path: Path, exported: Path, field: str, value: str, problem: str
) -> None:
    """Refuses a NUL or a lone surrogate in a session id or a row, before writing anything."""
    records = export_lines(exported)
    line = 1 if field == "session_id" else 2
    records[line][field] = value
    if field == "session_id":
        records[line + 3]["session_id"] = value  # its "end" record
    broken = write_lines(tmp_path / "bad.jsonl", records)
    target = tmp_path / "new.db"
    async with SessionDatabase(target, create=True) as admin:
        with pytest.raises(
            ExportFormatError, match=rf"line {line + 1}: '{field}' holds a {problem}"
        ):
            await admin.import_jsonl(broken)
    assert not target.exists()


@pytest.mark.sqlite
async def test_import_refuses_a_line_nested_too_deeply(tmp_path: Path, exported: Path) -> None:
    """Refuses a line nested 100,000 deep as a damaged file (no RecursionError); creates nothing."""
    deep = deep_file(exported, tmp_path / "deep.jsonl")
    target = tmp_path / "new.db"
    async with SessionDatabase(target, create=True) as admin:
        with pytest.raises(ExportFormatError, match="line 2: nested too deeply"):
            await admin.import_jsonl(deep)
    assert not target.exists()


@pytest.mark.sqlite
async def test_a_refused_import_creates_no_database_file(tmp_path: Path, exported: Path) -> None:
    """Leaves no database file behind when a cut export is refused."""
    cut = cut_file(exported, tmp_path / "cut.jsonl")
    target = tmp_path / "t2.db"
    async with SessionDatabase(target, create=True) as admin:
        with pytest.raises(ExportFormatError, match="footer is missing"):
            await admin.import_jsonl(cut)
    assert [name for name in names(tmp_path) if name.startswith("t2.db")] == []


@pytest.mark.sqlite
async def test_an_import_failing_midway_removes_only_a_file_it_created(
    tmp_path: Path, exported: Path
) -> None:
    """Removes the new database file after a failure mid-import, but keeps an existing one."""

    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop after the first session")

    new = tmp_path / "new.db"
    async with SessionDatabase(new, create=True) as admin:
        with pytest.raises(RuntimeError, match="stop after"):
            await admin.import_jsonl(exported, progress=fail)
    assert not new.exists()
    kept = await make_db(tmp_path / "kept.db", {"mine": ["keep"]})
    async with SessionDatabase(kept, create=True) as admin:
        with pytest.raises(RuntimeError, match="stop after"):
            await admin.import_jsonl(exported, progress=fail)
    assert count_rows_sqlite(kept, "mine") == 1


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_refused_import_creates_no_tables_on_postgres(
    tmp_path: Path, exported: Path, postgres: tuple[str, str]
) -> None:
    """Creates no tables on PostgreSQL when the file is refused (a bad time, or a NUL)."""
    records = export_lines(exported)
    records[2]["created_at"] = "9999-99-99 99:99:99"
    bad_time = write_lines(tmp_path / "time.jsonl", records)
    records = export_lines(exported)
    records[2]["data"] = '{"role":"user","content":"x"}\x00'
    nul = write_lines(tmp_path / "nul.jsonl", records)
    sessions, messages = postgres
    tables = ["--sessions-table", sessions, "--messages-table", messages]
    url = POSTGRES_URL.replace("+asyncpg", "")
    assert_one_line_error(run("import", url, str(bad_time), *tables), 1, "line 3: 'created_at'")
    assert_one_line_error(run("import", url, str(nul), *tables), 1, "line 3: 'data' holds a NUL")
    assert await postgres_tables(postgres) == set()


@pytest.mark.slow
@pytest.mark.sqlite
async def test_cli_import_refusals_are_one_line_and_create_nothing(
    tmp_path: Path, exported: Path
) -> None:
    """Exits 1 with one line naming the line for a deep, mistimed or cut file; no file is made."""
    records = export_lines(exported)
    records[1]["created_at"] = "not a time"
    mistimed = write_lines(tmp_path / "mistimed.jsonl", records)
    deep = deep_file(exported, tmp_path / "deep.jsonl")
    cut = cut_file(exported, tmp_path / "cut.jsonl")
    target = tmp_path / "t2.db"
    for path, message in (
        (mistimed, "line 2: 'created_at' is not a timestamp"),
        (deep, "line 2: nested too deeply"),
        (cut, "footer is missing"),
    ):
        assert_one_line_error(run("import", str(target), str(path)), 1, message)
        assert not target.exists()


# Escaping what the terminal would obey ----------------------------------------------------


def test_printable_shows_every_control_character() -> None:
    """Escapes C0 (keeping newline and tab), DEL, C1, bidi overrides and line separators."""
    assert printable("a\x1b[2J\tb\nc\r\x9b\u202e\x7f\x00\u2028") == (
        "a\\x1b[2J\tb\nc\\x0d\\x9b\\u202e\\x7f\\x00\\u2028"
    )
    assert one_line("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("Grüße, 東京, emoji 🎉") == "Grüße, 東京, emoji 🎉"


def test_renderers_escape_stored_text() -> None:
    """Escapes session ids and item text in the ls table, search lines and show entries."""
    from datetime import datetime

    from agent_sessions.admin.catalogue import SearchHit, SessionInfo

    now = datetime(2025, 1, 2, 10, 0, 0)
    evil_id = "s\x1b]0;t\x07"
    info = SessionInfo(evil_id, 1, 10, now, now, now, now)
    row_text = json.dumps(item(HOSTILE + "\nsecond\x1b[1A line"))
    hit = SearchHit(evil_id, 7, now, row_text)
    rendered = [
        *session_table([info]),
        *search_lines([hit]),
        *render_entries([StoredRow(7, row_text, now)], {7: "br\x1b[0m"}, limit=None),
    ]
    for line in rendered:
        for control in RAW_CONTROLS:
            assert control not in line, (control, line)
    assert "s\\x1b]0;t\\x07" in rendered[1]
    assert any(line.rstrip().endswith("second\\x1b[1A line") for line in rendered)


def test_shows_a_row_nested_too_deeply_as_undecodable() -> None:
    """Describes a stored row nested 100,000 deep as undecodable instead of crashing."""
    entry = describe('{"a":' * 100_000 + "1" + "}" * 100_000)
    assert entry.label == "undecodable"
    assert "nested too deeply" in entry.body


@pytest.mark.slow
@pytest.mark.sqlite
async def test_cli_escapes_stored_text_in_ls_search_and_show(tmp_path: Path) -> None:
    """Prints no raw control character from stored text; ``--json`` keeps each one escaped."""
    evil_id = "ev\x1b]0;pwned\x07il"
    db = await make_db(tmp_path / "s.db", {evil_id: [HOSTILE]})
    write_raw_sqlite(db, evil_id, '{"role":"user","content":"' + "\x1b[2J raw" + '"}')
    outputs = {
        "ls": run("ls", str(db)),
        "search": run("search", str(db), "hi"),
        "show": run("show", str(db), evil_id),
        "json": run("show", str(db), evil_id, "--json"),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr)
        for control in RAW_CONTROLS:
            assert control not in result.stdout, (name, control)
    assert "ev\\x1b]0;pwned\\x07il" in outputs["ls"].stdout
    assert "\\x1b]52;c;aGVsbG8=\\x07" in outputs["show"].stdout
    document = json.loads(outputs["json"].stdout)
    assert document["session"]["session_id"] == evil_id
    assert document["items"][0]["item"]["content"] == HOSTILE
    assert document["items"][1]["undecodable"]  # a raw control char is not valid JSON text
    assert outputs["json"].stdout.isascii()


# The demo without a network -----------------------------------------------------------------


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.slow
def test_demo_without_a_network_is_one_line_naming_offline(tmp_path: Path) -> None:
    """Exits 1 with one line naming ``--offline`` when the OpenAI API cannot be reached."""
    offline = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
    }
    result = run("demo", "--db", str(tmp_path / "d.db"), **offline)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "agent-sessions: error: cannot reach the OpenAI model (APIConnectionError: Connection "
        "error.); --offline forces the local model"
    ]


@pytest.mark.slow
def test_demo_offline_uses_the_local_model_despite_a_key(tmp_path: Path) -> None:
    """Runs the whole demo on the local model with ``--offline`` even when a key is set."""
    offline = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
    }
    result = run("demo", "--offline", "--db", str(tmp_path / "d.db"), **offline)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("agent-sessions demo: offline model")
    assert "The agent remembered." in result.stdout
    with sqlite3.connect(tmp_path / "d.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM agent_messages").fetchone()
    conn.close()
    assert count > 0


# Numbers beyond what a database takes, and the last-resort error line ----------------------


@pytest.mark.slow
@pytest.mark.sqlite
async def test_cli_numbers_beyond_64_bits_are_usage_errors(tmp_path: Path) -> None:
    """Exits 2 with one error line for counts, offsets and days no database can take."""
    db = str(await make_db(tmp_path / "s.db", {"a": ["one"]}))
    huge = "99999999999999999999"
    cases = [
        ["ls", db, "--limit", huge],
        ["ls", db, "--offset", "-5"],
        ["ls", db, "--min-items", huge],
        ["show", db, "a", "--limit", huge],
        ["search", db, "one", "--limit", huge],
        ["stats", db, "--days", "36526"],
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda args: run(*args), cases))
    for args, result in zip(cases, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert "expected a whole number from" in result.stderr.splitlines()[-1], args


def test_an_unexpected_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reports an error no handler expected as one line naming its type, and exits 1."""
    from agent_sessions import cli
    from agent_sessions.cli import commands

    async def broken(args: object) -> int:
        raise ZeroDivisionError("a bug\nspanning lines")

    monkeypatch.setitem(commands.COMMANDS, "ls", broken)
    monkeypatch.delenv("AGENT_SESSIONS_TRACEBACK", raising=False)
    assert cli.main(["ls", str(tmp_path / "any.db")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "agent-sessions: error: unexpected ZeroDivisionError: a bug\\x0aspanning lines "
        "(set AGENT_SESSIONS_TRACEBACK=1 to see the traceback)"
    ]
