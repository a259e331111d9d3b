"""Holding the writers' lock file of a SQLite database from a test, to stall its writers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def writers_held(path: Path) -> Iterator[Callable[[], None]]:
    """Hold the writers' lock file of ``path``; yields a function that releases it early."""
    import fcntl  # POSIX only, like the lock file it takes

    fd = os.open(f"{path}-lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held = True

    def release() -> None:
        nonlocal held
        if held:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    try:
        yield release
    finally:
        release()
