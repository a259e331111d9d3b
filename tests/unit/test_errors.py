"""The exception tree: one base class, the built-ins callers expect, and the drawn tree."""

from __future__ import annotations

import builtins
import re
from typing import NamedTuple

import pytest

from agent_sessions import errors
from agent_sessions.errors import (
    AgentSessionsError,
    CorruptItemError,
    InvalidIdentifierError,
    InvalidLimitError,
    ItemValidationError,
    MissingDependencyError,
    SessionClosedError,
    StorageError,
    StorageUnavailableError,
)

ALL_CLASSES = [getattr(errors, name) for name in errors.__all__]


class Node(NamedTuple):
    """One class as drawn in the module docstring."""

    name: str
    parent: str | None
    builtin: str | None


_BRANCH = re.compile(r"[├└]── (?P<name>\w+)(?: \((?P<builtin>\w+)\))?")


def drawn_tree() -> list[Node]:
    """Parse the tree drawn in the ``errors`` module docstring, root first."""
    lines = (errors.__doc__ or "").splitlines()
    roots = [line for line in lines if line.strip() == AgentSessionsError.__name__]
    if len(roots) != 1:
        return []  # the tests below then fail with what is missing, instead of at collection
    (root_line,) = roots
    indent = len(root_line) - len(root_line.lstrip())
    nodes = [Node(AgentSessionsError.__name__, None, None)]
    parents = [AgentSessionsError.__name__]  # parents[d] is the latest node drawn at depth d
    for line in lines[lines.index(root_line) + 1 :]:
        match = _BRANCH.search(line)
        if match is None:
            break
        depth = (match.start() - indent) // 4 + 1
        del parents[depth:]
        nodes.append(Node(match["name"], parents[depth - 1], match["builtin"]))
        parents.append(match["name"])
    return nodes


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_every_error_derives_from_the_base(cls: type[Exception]) -> None:
    """Derives every exported exception from ``AgentSessionsError``."""
    assert issubclass(cls, AgentSessionsError)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ItemValidationError, TypeError),
        (InvalidIdentifierError, ValueError),
        (InvalidLimitError, ValueError),
        (SessionClosedError, RuntimeError),
        (MissingDependencyError, ImportError),
        (StorageUnavailableError, StorageError),
    ],
    ids=lambda v: v.__name__,
)
def test_error_is_also_what_callers_expect(cls: type[Exception], builtin: type[Exception]) -> None:
    """Derives each misuse error from the class a caller of the SDK would already catch."""
    assert issubclass(cls, builtin)


@pytest.mark.parametrize("cls", [CorruptItemError, StorageError], ids=lambda c: c.__name__)
def test_data_and_storage_errors_are_not_misuse_errors(cls: type[Exception]) -> None:
    """Keeps corruption and storage failures apart from the built-in misuse errors."""
    assert not issubclass(cls, (TypeError, ValueError, RuntimeError, ImportError))


def test_item_validation_error_carries_index_and_reason() -> None:
    """Keeps the offending index and the reason, and states both in the message."""
    error = ItemValidationError(3, "a set is not JSON")
    assert (error.index, error.reason) == (3, "a set is not JSON")
    assert str(error) == "item 3 cannot be stored: a set is not JSON"


def test_corrupt_item_error_carries_session_and_detail() -> None:
    """Keeps the session id and the detail, and names the session in the message."""
    error = CorruptItemError("chat-7", "not JSON")
    assert (error.session_id, error.detail) == ("chat-7", "not JSON")
    assert "'chat-7'" in str(error)


def test_drawn_tree_names_every_exported_class() -> None:
    """Draws every class of ``errors.__all__`` in the module docstring, and nothing else."""
    names = [node.name for node in drawn_tree()]
    assert len(names) == len(set(names)), f"a class is drawn twice: {names}"
    assert sorted(names) == sorted(errors.__all__)


@pytest.mark.parametrize("node", drawn_tree()[1:], ids=lambda n: n.name)
def test_drawn_tree_matches_the_classes(node: Node) -> None:
    """Draws each class under its real parent and with the built-in it really derives from."""
    cls = getattr(errors, node.name)
    ours = [base.__name__ for base in cls.__bases__ if issubclass(base, AgentSessionsError)]
    others = [base.__name__ for base in cls.__bases__ if not issubclass(base, AgentSessionsError)]
    assert ours == [node.parent]
    assert others == ([] if node.builtin is None else [node.builtin])
    if node.builtin is not None:
        assert issubclass(cls, getattr(builtins, node.builtin))
