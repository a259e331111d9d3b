"""The export file's side of export and import: opening, writing, and its failures.

Failures of the file are kept apart from failures of the database: both can be ``OSError`` s,
and a full disk must not be reported as an unreachable server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

__all__ = ["FileFailed", "file_error", "finish", "open_output", "write"]


class FileFailed(Exception):
    """Reading or writing the export file failed; ``error`` is the ``OSError`` to raise.

    Database errors are translated into the package's errors, and some of them are
    ``OSError`` s too; this wrapper keeps a full disk, a closed pipe or an unreadable file from
    passing as "cannot reach the database".
    """

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def write(out: TextIO, text: str) -> None:
    """Write text on a worker thread; a failure becomes :class:`FileFailed`."""
    try:
        await asyncio.to_thread(out.write, text)
    except OSError as exc:
        raise FileFailed(exc) from exc


async def finish(out: TextIO, close: bool) -> None:
    """Flush (and close) the output, where a full disk shows up for buffered writes."""
    try:
        await asyncio.to_thread(out.close if close else out.flush)
    except OSError as exc:
        raise FileFailed(exc) from exc


def file_error(exc: OSError, path: Path, verb: str = "write") -> FileFailed:
    """The error for a file that cannot be opened, named as the operator named it."""
    return FileFailed(type(exc)(exc.errno, f"cannot {verb} {path}: {exc.strerror or exc}"))


def open_output(path: Path) -> tuple[TextIO, Path | None]:
    """Open where an export goes: a regular file under a temporary name, anything else as is.

    A device or a pipe (``/dev/stdout``, a FIFO) cannot be renamed over, so it is written
    directly.
    """
    if path.exists() and not path.is_file():
        return path.open("w", encoding="utf-8", newline="\n"), None
    partial = path.with_name(path.name + ".partial")
    return partial.open("w", encoding="utf-8", newline="\n"), partial
