"""The tree is the architecture: no import cycles, and imports run from higher layers down."""

from __future__ import annotations

import pytest

from .import_graph import PACKAGE, cycle_path, cycles, import_graph

CORE = {
    f"{PACKAGE}.{name}"
    for name in (
        "_archive",
        "_lifecycle",
        "_version",
        "_worker",
        "core",
        "errors",
        "metadata",
        "offline",
        "pending_runs",
        "provenance",
        "pruning",
        "schema",
        "serialization",
        "store",
    )
}
"""The session core: the modules every other layer stands on."""

MAY_IMPORT = {
    "core": {"core"},
    "backends": {"core", "backends"},
    "encryption": {"core", "backends", "encryption"},
    "memory": {"core", "backends", "encryption", "memory"},
    "compaction": {"core", "compaction"},
    "durable": {"core", "durable"},
    "admin": {"core", "backends", "encryption", "admin"},
    "testing": {"core", "backends", "memory", "testing"},
    "cli": {"core", "backends", "encryption", "memory", "admin", "cli"},
}
"""Which layers each layer may import: lower layers never import higher ones."""


def layer(module: str) -> str:
    """The layer a module belongs to: ``core`` or the subpackage it lives in."""
    if module in CORE:
        return "core"
    if module == f"{PACKAGE}.__main__":
        return "cli"
    return module.split(".")[1]


GRAPH = import_graph()


def test_the_graph_sees_the_whole_package() -> None:
    """Reads every module, including the subpackages, and finds their imports."""
    assert f"{PACKAGE}.core" in GRAPH
    assert f"{PACKAGE}.backends.advanced.store" in GRAPH
    assert f"{PACKAGE}.core" in GRAPH[f"{PACKAGE}.backends.sqlite"]
    assert f"{PACKAGE}.memory.store" in GRAPH[f"{PACKAGE}.memory.tools"]  # TYPE_CHECKING only


def test_cycle_detection_finds_a_planted_cycle() -> None:
    """Reports a loop of three modules, and the path through it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    """No module imports itself through others (TYPE_CHECKING and function imports count)."""
    loops = [" -> ".join(cycle_path(GRAPH, component)) for component in cycles(GRAPH)]
    assert not loops, "import cycles:\n" + "\n".join(loops)


@pytest.mark.parametrize("name", sorted(MAY_IMPORT))
def test_layers_import_downwards(name: str) -> None:
    """Every module of a layer imports only the layers beneath it (and its own)."""
    allowed = MAY_IMPORT[name]
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module != PACKAGE and layer(module) == name
        for target in targets
        if target != PACKAGE and layer(target) not in allowed
    )
    assert not upward, f"{name} imports a higher layer:\n" + "\n".join(upward)


def test_no_module_imports_the_package_facade() -> None:
    """Only users import ``agent_sessions`` itself; its own modules import what they need."""
    offenders = sorted(module for module, targets in GRAPH.items() if PACKAGE in targets)
    assert not offenders


def test_every_layer_is_known() -> None:
    """Each subpackage and each root module has a layer here, so none escapes the rule."""
    unknown = sorted({layer(m) for m in GRAPH if m != PACKAGE} - set(MAY_IMPORT))
    assert not unknown, f"modules outside every layer: {unknown}"
