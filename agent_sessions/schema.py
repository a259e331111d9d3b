"""Table names, the identifier check every name passes before DDL, and the ordered migrations.

Only validated identifiers are ever formatted into SQL; every value is a bound parameter. The
schema version of each pair of tables is kept in a small version table, and ``MIGRATIONS[i]``
takes a database from version ``i`` to ``i + 1``, so an existing database (including one written
by the SDK's own ``SQLiteSession``) is brought up to date in order, once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidIdentifierError

__all__ = [
    "DEFAULT_MESSAGES_TABLE",
    "DEFAULT_SESSIONS_TABLE",
    "PROVENANCE_COLUMNS",
    "RESERVED_WORDS",
    "SQLITE_MIGRATIONS",
    "VERSION_TABLE",
    "TableNames",
    "derived_name",
    "validate_identifier",
]

DEFAULT_SESSIONS_TABLE = "agent_sessions"
DEFAULT_MESSAGES_TABLE = "agent_messages"
VERSION_TABLE = "agent_sessions_schema"
"""Holds one row per messages table: the migration version its tables are at."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

RESERVED_WORDS = frozenset(
    """
    accessible add all alter analyse analyze and any array as asc asensitive asymmetric
    authorization autoincrement before between bigint binary blob both by call cascade case
    cast change char character check collate collation column commit concurrently condition
    constraint continue convert create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user cursor databases day_hour
    day_microsecond day_minute day_second dec decimal declare default deferrable delayed
    delete delete_domain_id desc describe deterministic distinct distinctrow div do
    do_domain_ids double drop dual each else elseif enclosed end escape escaped except
    exists exit explain false fetch float float4 float8 for force foreign freeze from full
    fulltext grant group having high_priority hour_microsecond hour_minute hour_second if
    ignore ignore_domain_ids ilike in index infile initially inner inout insensitive insert
    int int1 int2 int3 int4 int8 integer intersect interval into is isnull iterate join key
    keys kill lateral leading leave left like limit linear lines load localtime
    localtimestamp lock long longblob longtext loop low_priority master_demote_to_replica
    master_demote_to_slave master_ssl_verify_server_cert match maxvalue mediumblob mediumint
    mediumtext middleint minute_microsecond minute_second mod modifies natural
    no_write_to_binlog not nothing notnull null numeric offset on only optimize optionally
    or order out outer outfile over overlaps page_checksum parse_vcol_expr partition placing
    portion precision primary procedure purge raise range read read_write reads real
    recursive ref_system_id references regexp release rename repeat replace require resignal
    restrict return returning revoke right rlike row_number rows schemas second_microsecond
    select sensitive separator session_user set show signal similar smallint some spatial
    specific sql sql_big_result sql_calc_found_rows sql_small_result sqlexception sqlstate
    sqlwarning ssl starting stats_auto_recalc stats_persistent stats_sample_pages
    straight_join symmetric table tablesample terminated then tinyblob tinyint tinytext to
    trailing transaction trigger true undo union unique unlock unsigned update usage use
    user using utc_date utc_time utc_timestamp value values varbinary varchar varcharacter
    variadic varying verbose when where while window with write xor year_month zerofill
    """.split()  # noqa: SIM905 - a word list reads better than 284 quoted strings
)
"""Words that fail as an unquoted table name on SQLite, PostgreSQL or MariaDB (any case).

Found by running the package's statement shapes (create, reference, insert, select, join,
update, delete, drop) with each keyword of the three databases as the table name: a name that
works on one backend but not another would break a migration between them, so each is refused
everywhere.
"""

_OWN_TABLES = frozenset({VERSION_TABLE})
"""Tables the package keeps for itself, which a caller's table must never overwrite."""


def validate_identifier(name: object, what: str = "table name") -> str:
    """Return ``name`` if it is a plain SQL identifier every backend accepts unquoted, else raise.

    Args:
        name: The candidate identifier.
        what: What the name is for, used in the error message.

    Raises:
        InvalidIdentifierError: ``name`` is not 1-63 ASCII letters, digits or underscores
            starting with a letter or underscore, is a reserved word of SQLite, PostgreSQL or
            MariaDB (:data:`RESERVED_WORDS`), or is a table of the package's own. It is a
            ``ValueError``.
    """
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a valid identifier: use 1-63 letters, digits and "
            "underscores, starting with a letter or underscore"
        )
    folded = name.lower()
    if folded in RESERVED_WORDS:
        raise InvalidIdentifierError(
            f"{what} {name!r} is an SQL reserved word on SQLite, PostgreSQL or MariaDB; "
            "choose another name (a prefix such as 'app_' will do)"
        )
    if folded in _OWN_TABLES:
        raise InvalidIdentifierError(
            f"{what} {name!r} is the name of agent_sessions' own schema table; choose another"
        )
    return name


_MAX_IDENTIFIER = 63
"""PostgreSQL's limit on an identifier (it cuts longer ones silently): every name stays within."""


def derived_name(base: str, suffix: str) -> str:
    """The name of a table kept beside ``base``: ``<base>_<suffix>``, within 63 characters.

    A name that would be longer keeps the start of ``base`` and adds 8 hex digits of its hash,
    so two long configured names still get two different tables.
    """
    name = f"{base}_{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(base.encode("ascii")).hexdigest()[:8]
    keep = _MAX_IDENTIFIER - len(suffix) - len(digest) - 2
    return f"{base[:keep]}_{digest}_{suffix}"


@dataclass(frozen=True)
class TableNames:
    """The two tables a session lives in, validated on construction."""

    sessions: str = DEFAULT_SESSIONS_TABLE
    messages: str = DEFAULT_MESSAGES_TABLE

    def __post_init__(self) -> None:
        validate_identifier(self.sessions, "sessions_table")
        validate_identifier(self.messages, "messages_table")
        if self.sessions == self.messages:
            raise InvalidIdentifierError("sessions_table and messages_table must differ")
        if self.sessions in (self.state, self.archive):
            raise InvalidIdentifierError(
                f"sessions_table {self.sessions!r} is the name of the state or archive table "
                f"kept beside messages_table {self.messages!r}; choose another"
            )

    @property
    def state(self) -> str:
        """Table of per-session state values (``<messages>_state``), beside the history."""
        return derived_name(self.messages, "state")

    @property
    def archive(self) -> str:
        """Table of archived items (``<messages>_archive``): compacted and pruned history."""
        return derived_name(self.messages, "archive")

    @property
    def run_index(self) -> str:
        """The unique index that stores a run's item at a position once (schema v4)."""
        return derived_name(self.messages, "run")

    @property
    def index(self) -> str:
        """Name of the (session_id, id) index, the same name the SDK gives it."""
        return f"idx_{self.messages}_session_id"


Migration = Callable[[TableNames], list[str]]


def _v1_sdk_tables(t: TableNames) -> list[str]:
    # Same columns and index as the SDK's SQLiteSession, so either class opens the other's file.
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.sessions} (
            session_id TEXT PRIMARY KEY,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.messages} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            message_data TEXT NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (session_id) REFERENCES {t.sessions} (session_id) ON DELETE CASCADE
        )""",
        f"CREATE INDEX IF NOT EXISTS {t.index} ON {t.messages} (session_id, id)",
    ]


def _v2_exact_keys(t: TableNames) -> list[str]:
    # The SQLAlchemy store's step 2 makes MySQL/MariaDB keys exact; SQLite's are already. The
    # step is kept so both stores count versions alike in the version table they share.
    return []


def _v3_state_and_archive(t: TableNames) -> list[str]:
    # Tables of our own beside the SDK's: the SDK's class neither reads nor minds them. No
    # foreign key: a session may hold state before its first item, and clear deletes both.
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.state} (
            session_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (session_id, name)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.archive} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            batch INTEGER NOT NULL,
            kind TEXT NOT NULL,
            role TEXT NOT NULL,
            message_data TEXT NOT NULL,
            archived_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        )""",
        f"CREATE INDEX IF NOT EXISTS {derived_name(t.archive, 'session')} "
        f"ON {t.archive} (session_id, batch, id)",
    ]


PROVENANCE_COLUMNS = frozenset({"agent_name", "run_id", "run_position", "item_digest"})
"""The messages table's provenance columns (schema version 4, docs/schema.md)."""


def _v4_provenance(t: TableNames) -> list[str]:
    # Who wrote each row (issue 19): nullable columns the SDK's classes neither name nor mind,
    # and a unique key that stores a run's item at a position once (rows without a run: none).
    m = t.messages
    return [
        f"ALTER TABLE {m} ADD COLUMN agent_name TEXT",
        f"ALTER TABLE {m} ADD COLUMN run_id TEXT",
        f"ALTER TABLE {m} ADD COLUMN run_position INTEGER",
        f"ALTER TABLE {m} ADD COLUMN item_digest TEXT",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {t.run_index} "
        f"ON {m} (session_id, run_id, run_position) WHERE run_id IS NOT NULL",
    ]


SQLITE_MIGRATIONS: list[Migration] = [
    _v1_sdk_tables,
    _v2_exact_keys,
    _v3_state_and_archive,
    _v4_provenance,
]
"""SQLite schema steps; the position of a step is the version it upgrades from.

The numbering is the SQLAlchemy store's (``_sqlalchemy_schema.MIGRATIONS``): a file either
store migrated is at the same version for the other.
"""
