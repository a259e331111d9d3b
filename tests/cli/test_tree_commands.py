"""``show``, ``export``/``import`` and ``migrate`` on advanced sessions' branch trees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.cli import main
from tests.admin.test_tree_transfer import TREE, advanced_file
from tests.admin.trees import ServerTables
from tests.cli.test_startup import ASYNC_STACK, MAIN, SDK, loaded_after

SERVER_KINDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line in this process; return its stdout (it must succeed)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def tree_part(shown: str) -> list[str]:
    """The branches and usage that ``show`` prints after the items."""
    lines = shown.splitlines()
    return lines[lines.index("branches (* current):") :]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """An advanced file with a grown tree ("tree") and a plain session ("plain")."""
    path = tmp_path / "source.db"
    asyncio.run(advanced_file(path))
    return path


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerTables]:
    """Fresh tables on a server, dropped after."""
    tables = ServerTables(request.param)
    yield tables
    asyncio.run(tables.drop())


def test_show_lists_branches_parents_and_usage_per_turn(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints each branch with its parent, items, turns and time, the current one starred."""
    part = tree_part(cli(capsys, "show", str(source), TREE))
    header = part[1].split()
    assert header == ["BRANCH", "PARENT", "ITEMS", "USER", "TURNS", "CREATED"]
    branches = [line.replace("*", " ").split() for line in part[2:7]]
    assert [(b[0], b[1]) for b in branches] == [
        ("main", "-"),
        ("retry", "main"),
        ("deeper", "retry"),
        ("orphan", "main"),
        ("kept", "main"),
    ]
    assert [line.lstrip()[0] for line in part[2:7]] == ["m", "r", "*", "o", "k"]
    usage = part[part.index("") + 1 :]
    assert usage[0].startswith("usage: 7 requests, ")
    assert usage[1].split() == ["BRANCH", "TURN", "REQUESTS", "INPUT", "OUTPUT", "TOTAL"]
    turns = [line.split()[:2] for line in usage[2:]]
    assert ["main", "1"] in turns
    assert ["main", "all"] in turns
    assert ["kept", "3"] in turns  # the rewound turn's usage moved with it


def test_show_json_carries_the_tree(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` holds the current branch and each branch's parent and usage per turn."""
    document = json.loads(cli(capsys, "show", str(source), TREE, "--json"))
    assert document["current_branch"] == "deeper"
    branches = {b["branch_id"]: b for b in document["branches"]}
    assert branches["deeper"]["parent_id"] == "retry"
    assert branches["deeper"]["is_current"] is True
    assert branches["main"]["usage"]["total_turns"] == len(branches["main"]["turn_usage"])
    assert document["usage"]["requests"] == 7
    assert {item.get("branch") for item in document["items"]} >= {"main", "retry"}


def test_show_on_a_server_prints_what_it_prints_on_the_file(
    source: Path, server: ServerTables, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shows the same branches and usage on the server the file was migrated to."""
    tables = ["--sessions-table", server.sessions, "--messages-table", server.messages]
    on_file = tree_part(cli(capsys, "show", str(source), TREE))
    into = ["--dst-sessions-table", server.sessions, "--dst-messages-table", server.messages]
    cli(capsys, "migrate", str(source), server.url, "-q", *into)
    on_server = tree_part(cli(capsys, "show", server.url, TREE, *tables))
    assert on_server == on_file


def test_export_import_export_through_a_server_gives_the_same_bytes(
    source: Path, server: ServerTables, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Round-trips an export through the server byte for byte; says trees came along.

    The tree was written by ``Runner.run``: version 4, its items' provenance included.
    """
    tables = ["--sessions-table", server.sessions, "--messages-table", server.messages]
    first, again = tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    exported = cli(capsys, "export", str(source), "-o", str(first), "-q")
    imported = cli(capsys, "import", server.url, str(first), "-q", *tables)
    cli(capsys, "export", server.url, "-o", str(again), "-q", *tables)
    assert again.read_bytes() == first.read_bytes()
    lines = [json.loads(line) for line in first.read_text().splitlines()]
    assert lines[0]["version"] == 4
    assert any(line.get("type") == "item" and line.get("run_id") for line in lines)
    assert "1 with branch trees) to" in exported
    assert "1 with branch trees" in imported


def test_migrate_says_the_trees_came_along(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reports how many sessions were copied with their branch trees."""
    out = cli(capsys, "migrate", str(source), str(tmp_path / "copy.db"), "-q")
    assert "branch trees: 1 session copied with their branches" in out
    assert "note:" not in out
    assert tree_part(cli(capsys, "show", str(tmp_path / "copy.db"), TREE)) == tree_part(
        cli(capsys, "show", str(source), TREE)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "heavy"),
    [
        pytest.param(["export", "-o", "-"], (*SDK, *ASYNC_STACK), id="export"),
        # The branch logic is the advanced backend's, whose package imports the SDK.
        pytest.param(["show", TREE], ASYNC_STACK, id="show"),
    ],
)
def test_reading_an_advanced_file_loads_no_async_stack(
    source: Path, command: list[str], heavy: tuple[str, ...]
) -> None:
    """Exports (without the SDK) or shows an advanced file on the sync engine alone."""
    name, *rest = command
    loaded, stdout = loaded_after(MAIN, name, str(source), *rest)
    assert "retry" in stdout
    assert not set(heavy) & set(loaded), loaded
