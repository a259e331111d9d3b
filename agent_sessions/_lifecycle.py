"""One lifecycle for every resource: ``close()`` called or awaited, ``aclose()``, ``async with``.

The rule, the same on every session class:

* ``await session.aclose()`` closes and waits; ``async with session:`` does it on exit.
* ``session.close()`` closes at once where the work is synchronous (SQLite), so it works as
  the SDK's ``SQLiteSession.close()`` does; where the work is asynchronous (SQLAlchemy's
  engine), it starts it on the running event loop. Either way it returns a :class:`Closing`,
  so ``await session.close()`` also works everywhere, and waits until everything is closed.

Closing is idempotent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["AsyncClosing", "Closing", "Settling", "run_to_completion"]

_R = TypeVar("_R", bound="AsyncClosing")
T = TypeVar("T")


class Closing:
    """What ``close()`` returns: awaitable, and already done when closing happened at once.

    Args:
        task: The closing still running on the event loop, or None if it is done.
    """

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Future[None] | None = None) -> None:
        self._task = task

    @classmethod
    def start(cls, work: Awaitable[None], owner: str) -> Closing:
        """Run ``work`` on the running loop from now on, and return what awaits it.

        Raises:
            RuntimeError: there is no running event loop to close on (``work`` is dropped
                without a "never awaited" warning); await ``owner.aclose()`` inside one.
        """
        try:
            return cls(asyncio.ensure_future(work))
        except RuntimeError:
            if inspect.iscoroutine(work):
                work.close()
            raise RuntimeError(
                f"{owner} closes asynchronously and no event loop is running: "
                "use `await session.aclose()` inside one"
            ) from None

    def done(self) -> bool:
        """Whether everything is closed."""
        return self._task is None or self._task.done()

    def __await__(self) -> Generator[Any, None, None]:
        if self._task is not None:
            yield from self._task.__await__()

    def __repr__(self) -> str:
        return f"<Closing {'done' if self.done() else 'pending'}>"


class AsyncClosing:
    """Mixin: ``async with resource:`` returns the resource and awaits ``aclose()`` on exit."""

    async def aclose(self) -> None:
        """Release the resource; idempotent."""
        raise NotImplementedError

    async def __aenter__(self: _R) -> _R:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Settling(asyncio.Future[T]):
    """A future that refuses ``cancel()``: the task awaiting it is cancelled only once it is done.

    A store returns one for a mutation it has already queued (the group commit's batch).
    Cancelling the awaiting task then does not cancel the future; asyncio notes the request
    and raises ``CancelledError`` in the task as soon as the future settles. So
    :func:`run_to_completion` needs no task and no shield for it: the caller sees its
    cancellation after the write ended, whole.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        """Refuse: the operation runs to its end (the awaiting task is cancelled after it)."""
        return False


async def run_to_completion(awaitable: Awaitable[T]) -> tuple[T, bool]:
    """Await a mutation to its end even if the caller is cancelled meanwhile.

    Returns:
        The result, and whether the caller asked to be cancelled while waiting.
    """
    if isinstance(awaitable, Settling):
        try:
            return await awaitable, False
        except asyncio.CancelledError:
            if not awaitable.done():  # pragma: no cover - a Settling cannot be cancelled
                raise
            return awaitable.result(), True
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
            if task.done():
                return task.result(), cancelled
