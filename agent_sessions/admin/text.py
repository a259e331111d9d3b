r"""Stored text made safe for a terminal: control characters shown, never obeyed.

Session ids and items are whatever an application stored, so the CLI never prints them raw: an
ESC sequence in an item could clear the screen, retitle the window or write the clipboard (OSC
52). :func:`printable` replaces every C0 control (except, where the layout allows, newline and
tab), DEL, every C1 control, and the invisible characters that reorder or break lines (bidi
overrides and isolates, U+2028/U+2029) with a visible escape such as ``\x1b`` or ``\u202e``.
JSON output needs none of this: it is ASCII, with every control character ``\u``-escaped.
"""

from __future__ import annotations

import re

__all__ = ["one_line", "printable"]

_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_KEEP_LAYOUT = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[{_UNSAFE}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"  # noqa: PLR2004


def printable(text: str, *, layout: bool = True) -> str:
    """Return ``text`` with every terminal control character shown as an escape.

    Args:
        text: Any text, such as a stored item or a session id.
        layout: Keep newlines and tabs (for multi-line bodies); False escapes them too.
    """
    return (_KEEP_LAYOUT if layout else _ONE_LINE).sub(_escape, text)


def one_line(text: str) -> str:
    """Return ``text`` as one safe line: newlines and tabs are escaped as well."""
    return printable(text, layout=False)
