"""The tables of :mod:`agent_sessions.backends.advanced`, their SQL, and item metadata.

Items stay in the SDK's messages table, and their branch records in the SDK's own structure
tables (``message_structure``, ``turn_usage``, ``branch_reservations`` and
``session_clear_generations``), so the SDK's ``AdvancedSQLiteSession`` and ours read one file.
Two small tables of our own, named after the messages table, hold what the SDK's tables cannot
say: where a branch made by reference hangs (its parent and the id below which it inherits) and
the current branch of each session.

The SDK's structure tables are shared by a whole file and belong to one pair of tables (their
foreign keys say which). A pair that finds them owned by another pair gets its own copies,
named after its messages table; the SDK's class cannot read that pair's branches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from ...errors import InvalidIdentifierError
from ...schema import VERSION_TABLE, TableNames, validate_identifier
from .db import Connection
from .flavor import SQLITE, Flavor
from .segments import MAIN, NO_CUTOFF, SegmentStatements, off_main

__all__ = [
    "MAIN",
    "MIGRATIONS",
    "NAMED_BY_TYPE",
    "NO_CUTOFF",
    "TOOL_CALL_TYPES",
    "AdvancedStatements",
    "Row",
    "check_branch_id",
    "check_branch_name",
    "classify",
    "content_preview",
    "user_content",
    "user_texts",
]

_SYNTHETIC_TYPES = {
    "computer_call",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "shell_call",
    "apply_patch_call",
}
_TOOL_SEARCH_TYPES = {"tool_search_call", "tool_search_output"}
_MCP_TYPES = {"mcp_call", "mcp_approval_request"}
NAMED_BY_TYPE = frozenset({"shell_call", "apply_patch_call"})
"""Tool calls counted under their type when their row names no tool (older SDK rows)."""
TOOL_CALL_TYPES = frozenset(
    {
        "tool_call",
        "function_call",
        "computer_call",
        "file_search_call",
        "web_search_call",
        "code_interpreter_call",
        "tool_search_call",
        "custom_tool_call",
        "mcp_call",
        "mcp_approval_request",
        "shell_call",
        "apply_patch_call",
    }
)
"""The item types the SDK's ``get_tool_usage`` counts as one call each."""


def check_branch_id(branch_id: object, what: str = "branch_id") -> str:
    """Return ``branch_id`` if it is a string, for the calls that name an existing branch.

    Raises:
        TypeError: ``branch_id`` is not a ``str`` (None included).
    """
    if not isinstance(branch_id, str):
        raise TypeError(f"{what} must be a str, not {type(branch_id).__name__}")
    return branch_id


def check_branch_name(name: object) -> str:
    """Return ``name`` if it can name a new branch: what the SDK accepts, stored as given.

    Raises:
        TypeError: ``name`` is not a ``str``.
        InvalidIdentifierError: ``name`` is blank, or cannot be stored (a lone surrogate or
            a NUL); a ``ValueError``.
    """
    name = check_branch_id(name, "branch_name")
    if not name.strip():
        raise InvalidIdentifierError("Branch name cannot be empty or blank")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidIdentifierError(f"branch name {name!r} is not valid UTF-8: {exc}") from None
    if "\x00" in name:
        raise InvalidIdentifierError(f"branch name {name!r} contains a NUL character")
    return name


class Row(NamedTuple):
    """One visible item with its metadata; ``item_type`` is None for a row with no record."""

    id: int
    text: str
    branch_id: str
    item_type: str | None
    tool_name: str | None
    user_turn: int | None
    created_at: str | None
    sequence: int | None


def _tool_name(item: dict[str, Any], kind: object) -> str | None:  # noqa: PLR0911 (the SDK's cases)
    """Return the tool name the SDK records for an item, or None (the SDK's rules)."""
    if kind in _MCP_TYPES and "server_label" in item:
        label, name = item.get("server_label"), item.get("name")
        if name and label:
            return f"{label}.{name}"
        return str(label) if label else (str(name) if name else None)
    if kind in _TOOL_SEARCH_TYPES:
        return "tool_search"
    if kind in _SYNTHETIC_TYPES:
        return str(kind)
    if "name" not in item:
        return None
    name, namespace = item.get("name"), item.get("namespace")
    if name is None:
        return None
    name_text = str(name)
    space = str(namespace) if namespace is not None else None
    if space and name_text and space != name_text:
        return f"{space}.{name_text}"
    return name_text


def classify(item: object) -> tuple[str, str | None]:
    """Return an item's type for the structure table (``user``, ``assistant``, ...) and tool."""
    if not isinstance(item, dict):
        return "other", None
    role, kind = item.get("role"), item.get("type")
    if role == "user":
        kind_name = "user"
    elif role == "assistant":
        kind_name = "assistant"
    elif kind:
        kind_name = str(kind)
    else:
        kind_name = "other"
    return kind_name, _tool_name(item, kind)


def user_content(item: object) -> Any:
    """Return a user message's ``content`` as stored: a string or a list of parts."""
    return item.get("content", "") if isinstance(item, dict) else ""


def user_texts(item: object) -> list[str]:
    """Return the texts of a user message: its string content, or each of its text parts."""
    content: Any = user_content(item)
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return [t for t in texts if isinstance(t, str)]
    return []


def content_preview(content: Any, max_length: int | None = None) -> str:
    """Return a user message's content as a string preview, as the SDK shows it.

    A list of parts is shown as JSON; a preview cut at ``max_length`` ends with ``...``.
    """
    # A display string in the SDK's spacing, not a stored form: the codec is not involved.
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if max_length is not None and len(text) > max_length:
        return text[:max_length] + "..."
    return text


class Names(NamedTuple):
    """The tables one pair of tables keeps its branches in."""

    structure: str
    usage: str
    reservations: str
    generations: str
    branches: str
    current: str


def owner_of_structure(conn: Connection, structure: str) -> str | None:
    """Return the messages table ``structure``'s foreign key points at (None: no table)."""
    keys = conn.execute(f"PRAGMA foreign_key_list({structure})").fetchall()
    owners = [row[2] for row in keys if str(row[3]).lower() == "message_id"]
    if not keys and not owners:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
            (structure,),
        ).fetchone()
        return None if exists is None else ""
    return str(owners[0]) if len(owners) == 1 else ""


class AdvancedStatements:
    """The DDL and queries of the branch tables, formatted from validated names.

    They are formatted for the SDK's shared tables first; :meth:`bind` formats them again for
    the pair's own tables when the shared ones belong to another pair.

    Args:
        tables: The SDK's table names; our own tables are named after the messages table.
        flavor: The database's spelling of upserts and the like (SQLite by default).
    """

    def __init__(self, tables: TableNames, flavor: Flavor = SQLITE) -> None:
        self.tables = tables
        self.flavor = flavor
        m = tables.messages
        self.version_name = f"{m}.advanced"
        """The key of this pair's branch tables in the version table."""
        self.old_branch_of = validate_identifier(f"{m}_branch_of", "branch table name")
        self.old_usage = validate_identifier(f"{m}_usage", "usage table name")
        self.shared = True
        self.bind(shared=True)

    def names(self, *, shared: bool) -> Names:
        """Return the table names for the shared SDK tables or for the pair's own ones."""
        m = self.tables.messages

        def own(suffix: str) -> str:
            return validate_identifier(f"{m}_{suffix}", "branch table name")

        if shared:
            sdk = ("message_structure", "turn_usage", "branch_reservations")
            return Names(*sdk, "session_clear_generations", own("branches"), own("current"))
        return Names(
            own("structure"),
            own("turn_usage"),
            own("reservations"),
            own("generations"),
            own("branches"),
            own("current"),
        )

    def ddl(self, names: Names) -> list[str]:
        """Return the statements that create the tables and indexes (``IF NOT EXISTS``)."""
        s, m = self.tables.sessions, self.tables.messages
        st, us, rs, gen, br, cur = names
        pre = "idx_structure" if names.structure == "message_structure" else f"idx_{st}"
        upre = "idx_turn_usage" if names.usage == "turn_usage" else f"idx_{us}"
        return [
            # The SDK's layout, column for column, with the foreign keys it checks ownership by.
            f"""CREATE TABLE IF NOT EXISTS {st} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL,
                message_id INTEGER NOT NULL,
                branch_id TEXT NOT NULL DEFAULT 'main',
                message_type TEXT NOT NULL,
                sequence_number INTEGER NOT NULL,
                user_turn_number INTEGER,
                branch_turn_number INTEGER,
                tool_name TEXT,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                FOREIGN KEY (session_id) REFERENCES {s}(session_id) ON DELETE CASCADE,
                FOREIGN KEY (message_id) REFERENCES {m}(id) ON DELETE CASCADE)""",
            f"""CREATE TABLE IF NOT EXISTS {us} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL,
                branch_id TEXT NOT NULL DEFAULT 'main',
                user_turn_number INTEGER NOT NULL,
                requests INTEGER DEFAULT 0,
                input_tokens INTEGER DEFAULT 0,
                output_tokens INTEGER DEFAULT 0,
                total_tokens INTEGER DEFAULT 0,
                input_tokens_details JSON,
                output_tokens_details JSON,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                FOREIGN KEY (session_id) REFERENCES {s}(session_id) ON DELETE CASCADE,
                UNIQUE (session_id, branch_id, user_turn_number))""",
            f"""CREATE TABLE IF NOT EXISTS {rs} (
                session_id TEXT NOT NULL, branch_id TEXT NOT NULL,
                PRIMARY KEY (session_id, branch_id))""",
            f"""CREATE TABLE IF NOT EXISTS {gen} (
                session_id TEXT PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0)""",
            f"CREATE INDEX IF NOT EXISTS {pre}_session_seq ON {st} (session_id, sequence_number)",
            f"CREATE INDEX IF NOT EXISTS {pre}_branch_seq "
            f"ON {st} (session_id, branch_id, sequence_number)",
            f"CREATE INDEX IF NOT EXISTS {upre}_session_turn "
            f"ON {us} (session_id, branch_id, user_turn_number)",
            # The SDK's too (it makes it on its own file): a turn found by its number.
            f"CREATE INDEX IF NOT EXISTS {pre}_turn "
            f"ON {st} (session_id, branch_id, user_turn_number)",
            # Ours: a branch's rows by id, and a message's records, for bounded walks.
            f"CREATE INDEX IF NOT EXISTS idx_{st}_branch_message "
            f"ON {st} (session_id, branch_id, message_id)",
            f"CREATE INDEX IF NOT EXISTS idx_{st}_message ON {st} (message_id, branch_id)",
            f"""CREATE TABLE IF NOT EXISTS {br} (
                session_id TEXT NOT NULL, branch_id TEXT NOT NULL, parent_id TEXT,
                inherit_below INTEGER NOT NULL,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                PRIMARY KEY (session_id, branch_id))""",
            f"""CREATE TABLE IF NOT EXISTS {cur} (
                session_id TEXT PRIMARY KEY, branch_id TEXT NOT NULL)""",
        ]

    def bind(self, *, shared: bool) -> None:
        """Format every statement for the shared SDK tables or for the pair's own."""
        self.shared = shared
        n = self.names(shared=shared)
        self.n = n
        m = self.tables.messages
        st, us, rs, gen, br, cur = n
        self.objects = (st, us, rs, gen, br, cur, f"idx_{st}_branch_message", f"idx_{st}_message")
        """The tables and indexes a ready file has."""
        fl = self.flavor
        below = fl.id_bound(":below")
        # Existence probes of one branch other than main bound the index by the ranges around
        # main on PostgreSQL (see off_main); SQLite's planner turned them into scans instead.
        off = f" AND {off_main('x')}" if fl.name == "postgresql" else ""
        self.segments = SegmentStatements(m, st, below)
        # main's newest texts if main is the current branch (as `head` resolves it: no current
        # row, main, or a branch deleted meanwhile), else none: a read of main in one statement.
        # The check is the range's upper bound (0 if another branch is current), so it runs
        # once and a read of another branch scans nothing.
        other_current = (
            f"EXISTS (SELECT 1 FROM {cur} c WHERE c.session_id = :session "
            f"AND c.branch_id <> '{MAIN}' AND (EXISTS (SELECT 1 FROM {br} b "
            "WHERE b.session_id = :session AND b.branch_id = c.branch_id) "
            f"OR EXISTS (SELECT 1 FROM {st} x WHERE x.session_id = :session "
            f"AND x.branch_id = c.branch_id{off})))"
        )
        self.main_texts = self.segments.texts.main.replace(
            f"m.id < {below}",
            f"m.id < (SELECT CASE WHEN {other_current} THEN 0 ELSE {below} END)",
            1,
        )
        # The current branch with its own branch row (parent, cutoff, and whether it exists,
        # here or only in the structure table), in one statement. Always exactly one row.
        self.head = (
            "SELECT c.branch_id, b.parent_id, b.inherit_below, b.branch_id IS NOT NULL, "
            f"EXISTS (SELECT 1 FROM {st} x WHERE x.session_id = :session "
            f"AND x.branch_id = c.branch_id{off}) "
            f"FROM (SELECT 1 AS one) s LEFT JOIN {cur} c ON c.session_id = :session "
            f"LEFT JOIN {br} b ON b.session_id = :session "
            f"AND b.branch_id = coalesce(c.branch_id, '{MAIN}')"
        )
        self.insert_structure = (
            f"INSERT INTO {st} (session_id, message_id, branch_id, message_type, "
            "sequence_number, user_turn_number, branch_turn_number, tool_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.next_sequence = (
            f"SELECT coalesce(max(sequence_number), 0) FROM {st} WHERE session_id = ?"
        )
        self.set_turn = (
            f"UPDATE {st} SET user_turn_number = ?, branch_turn_number = ? "
            "WHERE message_id = ? AND branch_id = ?"
        )
        self.has_row = f"SELECT 1 FROM {m} WHERE id = ?"
        # What a pop reads of a row it deletes so that a restore puts its provenance back.
        self.row_provenance = (
            f"SELECT agent_name, run_id, run_position, item_digest, created_at FROM {m} "
            "WHERE id = ? AND run_id IS NOT NULL"
        )
        self.insert_at_tagged = (
            f"INSERT INTO {m} (id, session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.has_run_position = (
            f"SELECT 1 FROM {m} WHERE session_id = ? AND run_id = ? AND run_position = ?"
        )
        self.has_structure = f"SELECT 1 FROM {st} WHERE message_id = ? AND branch_id = ?"
        self.delete_structure_any = f"DELETE FROM {st} WHERE message_id = ? AND branch_id = ?"
        self.delete_forgotten = f"DELETE FROM {st} WHERE message_id = ?"
        # A message no structure row refers to any more is deleted with its last record.
        self.delete_if_orphan = (
            f"DELETE FROM {m} WHERE id = ? AND NOT EXISTS (SELECT 1 FROM {st} WHERE message_id = ?)"
        )
        self.branch_message_ids = (
            f"SELECT message_id FROM {st} WHERE session_id = ? AND branch_id = ?"
        )
        self.own_rows_below = (
            f"SELECT message_id, message_type, sequence_number, user_turn_number, "
            f"branch_turn_number, tool_name FROM {st} "
            f"WHERE session_id = ? AND branch_id = ? AND message_id < {fl.id_bound('?')} "
            "ORDER BY message_id"
        )
        self.delete_branch_structure = f"DELETE FROM {st} WHERE session_id = ? AND branch_id = ?"
        self.delete_orphans = (
            f"DELETE FROM {m} WHERE session_id = ? AND id IN ({{ids}}) AND NOT EXISTS "
            f"(SELECT 1 FROM {st} x WHERE x.message_id = {m}.id)"
        )
        self.delete_session_structure = f"DELETE FROM {st} WHERE session_id = ?"
        self.branch = (
            f"SELECT parent_id, inherit_below FROM {br} WHERE session_id = ? AND branch_id = ?"
        )
        # Asked only of branches other than main (main always exists), so off_main can bound
        # the index on PostgreSQL: each branch creation checks a name nobody uses yet, and its
        # generic plan read a whole index for it (2 ms at 100k items, the whole growth of
        # branch creation).
        self.has_structure_branch = (
            f"SELECT 1 FROM {st} x WHERE x.session_id = ? AND x.branch_id = ?{off} LIMIT 1"
        )
        # Every branch: main first, then ours in creation order, then those only the SDK's
        # rows name (in the order their first rows were written).
        self.branches = (
            f"SELECT branch_id, created_at, CASE WHEN branch_id = '{MAIN}' THEN 0 "
            f"ELSE {fl.branch_order} END "
            f"FROM {br} WHERE session_id = :session UNION ALL "
            f"SELECT branch_id, min(created_at), CASE WHEN branch_id = '{MAIN}' THEN 0 "
            f"ELSE {2**62} + min(id) END FROM {st} WHERE session_id = :session "
            f"AND branch_id NOT IN (SELECT branch_id FROM {br} WHERE session_id = :session) "
            "GROUP BY branch_id ORDER BY 3"
        )
        self.children = (
            f"SELECT branch_id, inherit_below FROM {br} WHERE session_id = ? AND parent_id = ? "
            "ORDER BY branch_id"
        )
        self.ensure_main = fl.insert_ignore(
            br,
            ("session_id", "branch_id", "parent_id", "inherit_below"),
            ("session_id", "branch_id"),
            values=("?", "?", "NULL", "0"),
        )
        self.insert_branch = (
            f"INSERT INTO {br} (session_id, branch_id, parent_id, inherit_below) "
            "VALUES (?, ?, ?, ?)"
        )
        self.set_cutoff = (
            f"UPDATE {br} SET inherit_below = ? WHERE session_id = ? AND branch_id = ?"
        )
        self.set_parent = (
            f"UPDATE {br} SET parent_id = ?, inherit_below = ? "
            "WHERE session_id = ? AND branch_id = ?"
        )
        # Undo of a pop that hid an inherited row: only if the pop's cutoff is still in place.
        self.restore_cutoff = f"{self.set_cutoff} AND inherit_below = ?"
        self.delete_branch = f"DELETE FROM {br} WHERE session_id = ? AND branch_id = ?"
        self.delete_branches = f"DELETE FROM {br} WHERE session_id = ?"
        self.set_current = fl.upsert(
            cur, ("session_id", "branch_id"), ("session_id",), {"branch_id": "new.branch_id"}
        )
        self.delete_current = f"DELETE FROM {cur} WHERE session_id = ?"
        self.reserve = fl.insert_ignore(
            rs, ("session_id", "branch_id"), ("session_id", "branch_id")
        )
        self.is_reserved = f"SELECT 1 FROM {rs} WHERE session_id = ? AND branch_id = ?"
        self.generation = f"SELECT generation FROM {gen} WHERE session_id = ?"
        self.bump_generation = fl.upsert(
            gen,
            ("session_id", "generation"),
            ("session_id",),
            {"generation": "old.generation + 1"},
            values=("?", "1"),
        )
        self._bind_usage(us)

    def _bind_usage(self, us: str) -> None:
        """Format the usage table's statements."""
        fl = self.flavor
        usage_columns = (
            "requests",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
        )
        self.put_usage = fl.upsert(
            us,
            ("session_id", "branch_id", "user_turn_number", *usage_columns),
            ("session_id", "branch_id", "user_turn_number"),
            {column: f"new.{column}" for column in usage_columns},
        )
        sums = (
            "SELECT SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(total_tokens), "
            f"COUNT(*) FROM {us} WHERE session_id = ?"
        )
        self.session_usage = sums
        self.branch_usage = f"{sums} AND branch_id = ?"
        self.turn_usage = (
            "SELECT user_turn_number, requests, input_tokens, output_tokens, total_tokens, "
            f"input_tokens_details, output_tokens_details FROM {us} "
            "WHERE session_id = ? AND branch_id = ? ORDER BY user_turn_number"
        )
        self.drop_usage_after = (
            f"DELETE FROM {us} WHERE session_id = ? AND branch_id = ? AND user_turn_number > ?"
        )
        self.delete_branch_usage = f"DELETE FROM {us} WHERE session_id = ? AND branch_id = ?"
        self.delete_turn_usage = f"{self.delete_branch_usage} AND user_turn_number = ?"
        self.delete_session_usage = f"DELETE FROM {us} WHERE session_id = ?"


# Migrations ----------------------------------------------------------------------------------

Step = Callable[[Connection, AdvancedStatements, Callable[[str], tuple[str, str | None]]], None]


def _v1_reference_tables(
    conn: Connection, sql: AdvancedStatements, _classify: Callable[[str], Any]
) -> None:
    """The first version's tables: per-item branch records and usage of our own."""
    m, bo, us = sql.tables.messages, sql.old_branch_of, sql.old_usage
    for statement in (
        f"""CREATE TABLE IF NOT EXISTS {bo} (
            message_id INTEGER PRIMARY KEY, session_id TEXT NOT NULL,
            branch_id TEXT NOT NULL, user_turn INTEGER NOT NULL,
            item_type TEXT NOT NULL, tool_name TEXT)""",
        f"CREATE INDEX IF NOT EXISTS idx_{bo} ON {bo} (session_id, branch_id, message_id)",
        f"""CREATE TABLE IF NOT EXISTS {m}_branches (
            session_id TEXT NOT NULL, branch_id TEXT NOT NULL, parent_id TEXT,
            inherit_below INTEGER NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (session_id, branch_id))""",
        f"""CREATE TABLE IF NOT EXISTS {m}_current (
            session_id TEXT PRIMARY KEY, branch_id TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {us} (
            session_id TEXT NOT NULL, branch_id TEXT NOT NULL, user_turn INTEGER NOT NULL,
            requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
            input_tokens_details TEXT, output_tokens_details TEXT,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (session_id, branch_id, user_turn))""",
    ):
        conn.execute(statement)


def _v2_sdk_structure(
    conn: Connection,
    sql: AdvancedStatements,
    classify_text: Callable[[str], tuple[str, str | None]],
) -> None:
    """Move branch records and usage into the SDK's structure tables, then drop ours.

    Every item gets a structure row on the branch that holds it, numbered in id order per
    session: the rows of our records keep their branch and turn, and rows no record names
    (written by a plain session) become ``main``'s, so the SDK's class sees them all.
    """
    owner = owner_of_structure(conn, "message_structure")
    shared = owner is None or owner.lower() == sql.tables.messages.lower()
    sql.bind(shared=shared)
    for statement in sql.ddl(sql.n):
        conn.execute(statement)
    m, bo, us, n = sql.tables.messages, sql.old_branch_of, sql.old_usage, sql.n
    rows = conn.execute(
        f"SELECT m.id, m.session_id, m.message_data, b.branch_id, b.user_turn FROM {m} m "
        f"LEFT JOIN {bo} b ON b.message_id = m.id "
        f"WHERE NOT EXISTS (SELECT 1 FROM {n.structure} x WHERE x.message_id = m.id) "
        "ORDER BY m.session_id, m.id"
    ).fetchall()
    sequence: dict[str, int] = {}
    turns: dict[tuple[str, str], int] = {}
    records = []
    for mid, session_id, text, recorded_branch, recorded_turn in rows:
        if session_id not in sequence:
            sequence[session_id] = conn.execute(sql.next_sequence, (session_id,)).fetchone()[0]
        sequence[session_id] += 1
        kind, tool = classify_text(text)
        branch = recorded_branch or MAIN
        turn = recorded_turn
        if turn is None:  # a plain session's row: count its turn on main
            turn = turns.get((session_id, branch), 0) + (kind == "user")
        turns[session_id, branch] = int(turn)
        records.append((session_id, mid, branch, kind, sequence[session_id], turn, turn, tool))
    conn.executemany(sql.insert_structure, records)
    conn.execute(
        f"INSERT INTO {n.usage} (session_id, branch_id, user_turn_number, requests, "
        "input_tokens, output_tokens, total_tokens, input_tokens_details, "
        "output_tokens_details, created_at) SELECT session_id, branch_id, user_turn, requests, "
        "input_tokens, output_tokens, total_tokens, input_tokens_details, "
        f"output_tokens_details, created_at FROM {us} WHERE true "
        "ON CONFLICT (session_id, branch_id, user_turn_number) DO NOTHING"
    )
    conn.execute(
        f"INSERT INTO {n.reservations} (session_id, branch_id) "
        f"SELECT session_id, branch_id FROM {n.branches} WHERE true "
        "ON CONFLICT (session_id, branch_id) DO NOTHING"
    )
    conn.execute(f"DROP TABLE {bo}")
    conn.execute(f"DROP TABLE {us}")


def _v3_turn_index(
    conn: Connection, sql: AdvancedStatements, _classify: Callable[[str], Any]
) -> None:
    """Index the structure rows by turn, so turn ``n`` is found without counting."""
    bind_existing(conn, sql)
    st = sql.n.structure
    pre = "idx_structure" if st == "message_structure" else f"idx_{st}"
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {pre}_turn ON {st} (session_id, branch_id, user_turn_number)"
    )


MIGRATIONS: list[Step] = [_v1_reference_tables, _v2_sdk_structure, _v3_turn_index]
"""The branch tables' steps; the position of a step is the version it upgrades from."""


def schema_version(conn: Connection, sql: AdvancedStatements) -> int:
    """Return the version this pair's branch tables are at (a pre-versioning file: 1)."""
    has_versions = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    row = None
    if has_versions is not None:
        row = conn.execute(
            f"SELECT version FROM {VERSION_TABLE} WHERE name = ?", (sql.version_name,)
        ).fetchone()
    if row is not None:
        return int(row[0])
    old = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (sql.old_branch_of,)
    ).fetchone()
    return 1 if old is not None else 0


def set_schema_version(conn: Connection, sql: AdvancedStatements, version: int) -> None:
    """Record the version this pair's branch tables are at."""
    conn.execute(
        f"INSERT INTO {VERSION_TABLE} (name, version) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
        (sql.version_name, version),
    )


def bind_existing(conn: Connection, sql: AdvancedStatements) -> None:
    """Format the statements for whichever structure tables this pair already uses."""
    owner = owner_of_structure(conn, "message_structure")
    sql.bind(shared=owner is not None and owner.lower() == sql.tables.messages.lower())
