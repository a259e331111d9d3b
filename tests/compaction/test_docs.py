"""The compaction documentation's example runs as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.sqlite


async def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example under "## Compaction" in docs/compaction.md runs and its asserts hold."""
    doc = (Path(__file__).parents[2] / "docs" / "compaction.md").read_text(encoding="utf-8")
    section = doc.split("\n## Compaction\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/compaction.md", "exec"), namespace)  # noqa: S102 (our own docs)
    monkeypatch.chdir(tmp_path)
    await namespace["main"]()
    assert (tmp_path / "chats.db").exists()
