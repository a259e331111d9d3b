"""SQL placeholders: no numbered ``?N``, which Python 3.12 deprecates binding from a sequence."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "agent_sessions"


def test_no_numbered_placeholders_in_the_package() -> None:
    """No module writes a ``?N`` placeholder (3.14 refuses it with a sequence): ``?``, ``:name``."""
    found = [
        f"{path.relative_to(ROOT.parent)}:{number}"
        for path in sorted(ROOT.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\?\d", line)
    ]
    assert found == []
