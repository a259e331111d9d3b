"""The README's memory example runs as printed and finds the memory it stored."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def memory_example() -> str:
    """The Python block under the README's "Remember users across conversations" heading."""
    section = README.read_text(encoding="utf-8").split("## Remember users across conversations")[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's memory section has no Python block"
    return found.group(1)


async def test_the_readme_memory_example_finds_the_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's search for "how should I explain?" returns the style memory it put."""
    monkeypatch.chdir(tmp_path)
    source = "async def example():\n" + textwrap.indent(memory_example(), "    ")
    source += "    return hits, agent\n"
    namespace: dict[str, Any] = {}
    exec("from agents import Agent\n" + source, namespace)  # noqa: S102 - our own README
    hits, agent = await namespace["example"]()
    assert [hit.key for hit in hits] == ["style"]
    assert [tool.name for tool in agent.tools] == ["remember", "recall", "forget"]
    assert (tmp_path / "app.db").stat().st_size > 0
