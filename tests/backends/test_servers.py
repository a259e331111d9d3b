"""The database servers the SQL backends are tested on answer real queries.

These tests are the switch ``.ci/run`` relies on: without a server they skip with the reason on a
developer's machine, and fail under ``AGENT_SESSIONS_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import require_server


@pytest.mark.postgres
async def test_postgres_answers() -> None:
    """PostgreSQL on 127.0.0.1:5432 accepts a trusted connection to the `test` database."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
    finally:
        await conn.close()


@pytest.mark.mariadb
async def test_mariadb_answers() -> None:
    """MariaDB on 127.0.0.1:3306 accepts root with an empty password on the `test` database."""
    require_server("MariaDB", "127.0.0.1", 3306)
    aiomysql = pytest.importorskip("aiomysql", reason="the mysql extra is not installed")
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", db="test")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 40 + 2")
            assert await cursor.fetchone() == (42,)
    finally:
        conn.close()
