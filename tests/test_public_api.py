"""The curated public surface: ``__all__``, docstrings, import weight and the SDK protocol."""

from __future__ import annotations
import __future__

import inspect
import subprocess
import sys

import agents.memory
import pytest

import agent_sessions

UNDOCUMENTED_EXPORTS = {"__version__"}


def public_namespace() -> set[str]:
    """Return the public names the package offers, submodules and ``__future__`` flags aside."""
    # Names in ``__all__`` are included so that a lazily resolved export (module ``__getattr__``)
    # counts as long as it actually resolves.
    candidates = set(vars(agent_sessions)) | set(agent_sessions.__all__)
    names = set()
    for name in candidates:
        if name.startswith("_") or not hasattr(agent_sessions, name):
            continue
        value = getattr(agent_sessions, name)
        # `from __future__ import annotations` leaves a compiler flag, not an export, behind.
        if inspect.ismodule(value) or value is getattr(__future__, name, None):
            continue
        names.add(name)
    return names


def test_all_is_sorted() -> None:
    """Lists the exports in sorted order."""
    assert agent_sessions.__all__ == sorted(agent_sessions.__all__)


def test_all_has_no_duplicates() -> None:
    """Lists each export once."""
    assert len(agent_sessions.__all__) == len(set(agent_sessions.__all__))


def test_all_matches_the_namespace() -> None:
    """Exports exactly the public names of the package namespace that are not submodules."""
    exported = set(agent_sessions.__all__) - UNDOCUMENTED_EXPORTS
    assert exported == public_namespace()


def test_version_is_exported() -> None:
    """Exports ``__version__`` as a non-empty string."""
    assert "__version__" in agent_sessions.__all__
    assert isinstance(agent_sessions.__version__, str)
    assert agent_sessions.__version__


def _own_docstring(value: object) -> str | None:
    doc = getattr(value, "__doc__", None)
    name = getattr(value, "__name__", "")
    # Dataclasses and named tuples without a docstring get their signature as one.
    if doc is None or (name and doc.startswith(f"{name}(")):
        return None
    return doc.strip() or None


@pytest.mark.parametrize(
    "name", sorted(set(agent_sessions.__all__) - UNDOCUMENTED_EXPORTS), ids=str
)
def test_every_export_has_a_docstring(name: str) -> None:
    """Gives every exported class and function a docstring of its own."""
    value = getattr(agent_sessions, name)
    assert inspect.isclass(value) or inspect.isfunction(value), f"{name} is {type(value)}"
    assert _own_docstring(value), f"agent_sessions.{name} has no docstring"


def test_package_has_a_docstring() -> None:
    """Describes the package in its module docstring."""
    assert _own_docstring(agent_sessions)


def test_testing_module_imports_no_optional_driver() -> None:
    """Imports ``agent_sessions.testing`` without loading sqlalchemy, asyncpg or aiomysql."""
    script = (
        "import sys\n"
        "import agent_sessions.testing\n"
        "heavy = ('sqlalchemy', 'asyncpg', 'aiomysql')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    result = run_python(script)
    assert result.stdout.strip() == "[]", result.stdout


def test_sqlite_session_satisfies_the_sdk_protocol() -> None:
    """Makes ``SQLiteSession`` an instance of the SDK's ``agents.memory.Session`` protocol."""
    session = agent_sessions.SQLiteSession("protocol")
    try:
        assert isinstance(session, agents.memory.Session)
    finally:
        session.close()


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter and fail the test if it exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def test_import_loads_neither_the_sdk_nor_a_driver() -> None:
    """``import agent_sessions`` loads no SDK, SQLAlchemy, driver, cryptography or numpy."""
    script = (
        "import sys\n"
        "import agent_sessions\n"
        "heavy = ('agents', 'openai', 'sqlalchemy', 'cryptography', 'aiosqlite', 'asyncpg',"
        " 'aiomysql', 'numpy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    result = run_python(script)
    assert result.stdout.strip() == "[]", result.stdout


def test_lazy_exports_resolve_to_the_sdk_protocol_class() -> None:
    """Resolves ``SQLiteSession`` on first use, after a light import, as an SDK ``Session``."""
    script = (
        "import sys\n"
        "import agent_sessions\n"
        "assert 'agents' not in sys.modules\n"
        "from agent_sessions import SQLiteSession\n"
        "import agents.memory\n"
        "from agent_sessions.backends.sqlite import SQLiteSession as Defined\n"
        "assert SQLiteSession is Defined is agent_sessions.SQLiteSession\n"
        "session = SQLiteSession('protocol')\n"
        "try:\n"
        "    assert isinstance(session, agents.memory.Session)\n"
        "finally:\n"
        "    session.close()\n"
        "print('ok')\n"
    )
    result = run_python(script)
    assert result.stdout.strip() == "ok", result.stdout


def test_dir_lists_the_exports_it_always_listed() -> None:
    """Shows in ``dir()`` the names that were eager before they became lazy, before first use."""
    script = (
        "import agent_sessions\n"
        "print(' '.join(n for n in dir(agent_sessions) if not n.startswith('_')))\n"
    )
    result = run_python(script)
    shown = set(result.stdout.split())
    assert {"SQLiteSession", "SQLiteStore", "SessionState", "StoreSession"} <= shown
    assert {"Popped", "RowStore", "Store", "AgentSessionsError"} <= shown
