"""The export file's side of export and import: opening, writing, and its failures.

Failures of the file are kept apart from failures of the database: both can be ``OSError`` s,
and a full disk must not be reported as an unreachable server.

An export to a path is written to a temporary file created exclusively (``mkstemp``: a random
name, ``O_EXCL``, mode 0600, never through a link) in the target's directory, and renamed into
place only when complete. The target is checked first: the source database, or any SQLite file,
is never overwritten, and any other existing file only when the caller says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import TextIO

__all__ = [
    "ExportTarget",
    "FileFailed",
    "file_error",
    "finish",
    "is_sqlite_file",
    "write",
]

_SQLITE_MAGIC = (
    b"SQLite format 3\x00",  # a database
    b"\x37\x7f\x06\x82",  # a write-ahead log (either byte order of its checksums)
    b"\x37\x7f\x06\x83",
    b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7",  # a rollback journal
)


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


def _refused(path: Path, why: str) -> FileFailed:
    return FileFailed(FileExistsError(f"refusing to write the export to {path}: {why}"))


def is_sqlite_file(path: Path) -> bool:
    """Whether a regular file starts like a SQLite database, write-ahead log or journal."""
    with path.open("rb") as handle:
        head = handle.read(16)
    return any(head.startswith(magic) for magic in _SQLITE_MAGIC)


class ExportTarget:
    """Where an export goes: checked, then written under a temporary name and renamed.

    A device or a pipe (``/dev/stdout``, a FIFO) cannot be renamed over, so it is written
    directly.

    Args:
        path: The export file.
        source: The SQLite file being exported, if any: never written to.
        overwrite: Replace an existing regular file (never a SQLite file). The replaced file's
            permission bits are kept; a new file is created readable by its owner only.
    """

    def __init__(self, path: Path, source: Path | None, *, overwrite: bool) -> None:
        self.path = path
        self.source = source
        self.overwrite = overwrite
        self._temporary: Path | None = None
        self._mode: int | None = None

    def _check(self) -> os.stat_result | None:
        """Refuse a target that must not be written; return its status if it exists."""
        try:
            status = self.path.stat()  # through a link: what would really be overwritten
        except FileNotFoundError:
            if self.path.is_symlink():
                raise _refused(self.path, "it is a dangling symbolic link") from None
            return None
        if self.source is not None:
            with contextlib.suppress(OSError):
                if os.path.samefile(self.path, self.source):
                    raise _refused(self.path, "it is the database being exported")
        if stat.S_ISDIR(status.st_mode):
            raise FileFailed(IsADirectoryError(f"cannot write {self.path}: it is a directory"))
        if not stat.S_ISREG(status.st_mode):
            return status
        if is_sqlite_file(self.path):
            raise _refused(self.path, "it is a SQLite database (or its journal)")
        if not self.overwrite:
            raise _refused(self.path, "the file exists (--force replaces it)")
        return status

    def open(self) -> TextIO:
        """Check the target and open where the export is written."""
        try:
            status = self._check()
            if status is not None and not stat.S_ISREG(status.st_mode):
                return self.path.open("w", encoding="utf-8", newline="\n")
            self._mode = None if status is None else stat.S_IMODE(status.st_mode)
            fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
            )
        except FileFailed:
            raise
        except OSError as exc:
            raise file_error(exc, self.path) from exc
        self._temporary = Path(name)
        return os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def commit(self) -> None:
        """Put the complete export in place (after the stream was closed)."""
        temporary = self._temporary
        if temporary is None:
            return
        try:
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            if self._mode is not None:
                os.chmod(temporary, self._mode)
            self._check()  # again: the target may have changed while the export ran
            if self.overwrite:
                os.replace(temporary, self.path)
            else:
                self._link_new(temporary)
        except FileFailed:
            raise
        except OSError as exc:
            raise file_error(exc, self.path) from exc
        self._temporary = None

    def _link_new(self, temporary: Path) -> None:
        """Move the export to a name that must not exist: a hard link fails if it does."""
        try:
            os.link(temporary, self.path, follow_symlinks=False)
        except FileExistsError:
            raise _refused(self.path, "the file exists (--force replaces it)") from None
        except OSError:
            # A file system without hard links: the check just made is the best there is.
            os.replace(temporary, self.path)
            return
        temporary.unlink()

    def discard(self) -> None:
        """Remove the temporary file of an export that did not complete."""
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                self._temporary.unlink()
            self._temporary = None
