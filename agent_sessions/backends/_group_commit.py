"""Group commit: batches that arrive while the worker is busy are committed together.

A durable commit costs one fsync, whatever it holds. When many sessions share one store and write
at once, each ``add_items`` waits in a queue; the next flush on the worker thread takes every
batch queued so far and writes them in one transaction, so N concurrent batches cost one fsync
instead of N. Each batch is still all or nothing: if the shared transaction fails, the batches
are written again one transaction each, so one failing batch cannot take the others down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from .._lifecycle import Settling
from .._worker import ConnectionWorker, deliver
from ..errors import SessionClosedError

__all__ = ["GroupCommit"]

C = TypeVar("C")
B = TypeVar("B")
T = TypeVar("T")
Batch = tuple[str, Sequence[str]]
"""A session id and the stored texts of one ``add_items`` call."""


class _Waiting(NamedTuple, Generic[B]):
    batch: B
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: object
    """What the future resolves to once the batch is committed."""


class GroupCommit(Generic[C, B]):
    """Queues batches and writes all queued ones in one transaction on the worker thread.

    Args:
        worker: The worker that owns the connection.
        write: Writes a list of batches (of the store's own shape, :data:`Batch` or richer) in
            one transaction on that connection, or raises.
    """

    def __init__(self, worker: ConnectionWorker[C], write: Callable[[C, list[B]], None]) -> None:
        self._worker = worker
        # The flush runs on the worker thread, and its callback on the loop, after the batch's
        # caller was answered: they hold the queue only, never the worker, so a store dropped
        # right after a write is collected (and warns) at once.
        self._queue: _Queue[C, B] = _Queue(write)

    def append(self, batch: B) -> Settling[None]:
        """Queue one batch, to be written with whatever else is queued; await it to commit.

        The future resolves once the batch is committed, and its caller cannot cancel it (see
        :class:`~agent_sessions.core.Settling`): a batch once queued is written whole, and a
        cancelled caller learns of the cancellation only after that. The flush answers each
        batch once, with no second wake-up of the loop for the flush itself.

        Raises:
            SessionClosedError: the store is closed.
        """
        return self._enqueue(batch, None)

    def append_counted(self, batch: B, count: int) -> Settling[int]:
        """:meth:`append`, with a future that resolves to ``count`` (rows the batch stores)."""
        return self._enqueue(batch, count)

    def _enqueue(self, batch: B, result: T) -> Settling[T]:
        if self._worker.closed:
            raise SessionClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        future: Settling[T] = Settling(loop=loop)
        queue = self._queue
        queue.waiting.append(_Waiting(batch, loop, future, result))
        # The flush clears the flag before it drains the queue, so a batch queued after the
        # drain always finds the flag clear and queues a flush of its own.
        if not queue.flush_queued:
            queue.flush_queued = True
            self._worker.post(queue.flush, queue.flush_failed)
        return future


class _Queue(Generic[C, B]):
    """The batches waiting for a flush, and the flush itself."""

    def __init__(self, write: Callable[[C, list[B]], None]) -> None:
        self._write = write
        self.waiting: deque[_Waiting[B]] = deque()
        self.flush_queued = False

    def flush_failed(self, error: BaseException) -> None:
        """If a flush could not run (the database could not be opened), fail what it would write.

        Runs on the worker thread. The worker hands such a flush the error instead of running
        it, so the batches it would have taken are still queued: each caller gets the error
        instead of waiting forever.
        """
        self.flush_queued = False
        while self.waiting:
            self._report(self.waiting.popleft(), error)

    def flush(self, conn: C) -> None:
        """Write every queued batch in one transaction, on the worker thread; answer each caller."""
        self.flush_queued = False
        waiting: list[_Waiting[B]] = []
        while self.waiting:
            entry = self.waiting.popleft()
            if not entry.future.cancelled():
                waiting.append(entry)
        if not waiting:
            return
        try:
            self._write(conn, [entry.batch for entry in waiting])
        except Exception as exc:  # noqa: BLE001 - every failure is reported to its caller
            if len(waiting) == 1:
                self._report(waiting[0], exc)
                return
            for entry in waiting:
                self._write_alone(conn, entry)
            return
        except BaseException as exc:  # the thread is going down: no caller may wait forever
            for entry in waiting:
                self._report(entry, exc)
            raise
        for entry in waiting:
            self._report(entry, None)

    def _write_alone(self, conn: C, entry: _Waiting[B]) -> None:
        try:
            self._write(conn, [entry.batch])
        except Exception as exc:  # noqa: BLE001 - reported to this batch's caller
            self._report(entry, exc)
        else:
            self._report(entry, None)

    @staticmethod
    def _report(entry: _Waiting[Any], error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            outcome = entry.result if error is None else error
            entry.loop.call_soon_threadsafe(deliver, entry.future, error is None, outcome)
