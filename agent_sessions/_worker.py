"""One dedicated thread that owns a blocking connection and runs every call on it, in order.

Blocking drivers (stdlib ``sqlite3``) must not run on the event loop. Giving each store its own
thread serializes access to its connection without any lock, and keeps the connection on the
thread that created it. Results travel back with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import SessionClosedError

__all__ = ["ConnectionWorker", "deliver"]

C = TypeVar("C")
T = TypeVar("T")

_Job = tuple[Callable[[C], object], asyncio.AbstractEventLoop, "asyncio.Future[object]"]
_Posted = tuple[Callable[[C], object], None, Callable[[BaseException], object]]
"""A job nobody awaits (``ConnectionWorker.post``): only a failure is reported, on the thread."""


class _Stop:
    """Queued last: close the connection, end the thread, then tell ``future`` (if any)."""

    def __init__(
        self, notify: tuple[asyncio.AbstractEventLoop, asyncio.Future[object]] | None = None
    ) -> None:
        self.notify = notify


def deliver(future: asyncio.Future[Any], ok: bool, value: object) -> None:
    """Resolve ``future`` with a result (``ok``) or an exception, unless it was cancelled.

    Runs on the future's loop: call it through ``loop.call_soon_threadsafe``.
    """
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        assert isinstance(value, BaseException)  # noqa: S101 - invariant of _serve
        future.set_exception(value)


def _run(job: _Job[C] | _Posted[C], connection: C | None, failure: BaseException | None) -> None:
    """Run one job and hand its outcome to the caller's loop.

    A function of its own so that the job's references die with its frame: an idle worker
    thread must not keep the last caller (and so its store) alive.
    """
    if job[1] is None:
        _run_posted(job, connection, failure)
        return
    call, loop, future = job
    if future.cancelled():
        return  # the caller gave up before the call started: it never happens
    value: object
    if failure is not None:
        value, ok = failure, False
    else:
        try:
            value, ok = call(connection), True  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting caller
            value, ok = exc, False
    # A closed loop means nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(deliver, future, ok, value)


def _run_posted(job: _Posted[C], connection: C | None, failure: BaseException | None) -> None:
    """Run a posted job; hand a failure (or the connection's) to its ``failed``, on this thread."""
    call, _, failed = job
    if failure is None:
        try:
            call(connection)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported through the job's own callback
            failure = exc
        else:
            return
    failed(failure)


def _serve(
    jobs: queue.SimpleQueue[_Job[C] | _Posted[C] | _Stop],
    connect: Callable[[], C],
    disconnect: Callable[[C], None],
) -> None:
    try:
        connection: C | None = connect()
        failure: BaseException | None = None
    except BaseException as exc:  # noqa: BLE001 - handed to every caller below
        connection, failure = None, exc
    while True:
        job = jobs.get()
        if isinstance(job, _Stop):
            break
        _run(job, connection, failure)
        del job
    closing_error: BaseException | None = None
    if connection is not None:
        try:
            disconnect(connection)
        except BaseException as exc:  # noqa: BLE001 - reported to aclose() below
            closing_error = exc
    if job.notify is not None:
        loop, future = job.notify
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, future, closing_error is None, closing_error)


def _on_collect(jobs: queue.SimpleQueue[object], label: str) -> None:
    warnings.warn(
        f"{label} was never closed; call close() or use 'async with'", ResourceWarning, stacklevel=1
    )
    jobs.put(_Stop())


class ConnectionWorker(Generic[C]):
    """Owns one connection on one thread; ``run`` executes a function on it and awaits the result.

    Args:
        connect: Opens the connection, on the worker thread. If it raises, every call raises
            that error.
        disconnect: Closes the connection, on the worker thread, when the worker stops.
        label: Names the resource in thread names and in warnings.
    """

    def __init__(
        self, connect: Callable[[], C], disconnect: Callable[[C], None], *, label: str
    ) -> None:
        self._label = label
        self._jobs: queue.SimpleQueue[_Job[C] | _Posted[C] | _Stop] = queue.SimpleQueue()
        self._closed = False
        # Daemon, so a session nobody closed cannot keep the interpreter alive; SQLite's
        # journal keeps the file consistent even if the thread dies mid-transaction.
        self._thread = threading.Thread(
            target=_serve, args=(self._jobs, connect, disconnect), name=label, daemon=True
        )
        self._finalizer: weakref.finalize[..., object] | None = None

    @property
    def closed(self) -> bool:
        """True once ``close`` or ``aclose`` was called."""
        return self._closed

    def start(self) -> None:
        """Start the thread, which opens the connection; idempotent, and implied by ``run``."""
        if self._finalizer is None and not self._closed:
            self._finalizer = weakref.finalize(self, _on_collect, self._jobs, self._label)
            self._finalizer.atexit = False
            self._thread.start()

    def submit(self, call: Callable[[C], T]) -> asyncio.Future[T]:
        """Queue ``call(connection)`` for the worker thread; the future resolves with its result.

        Raises:
            SessionClosedError: the worker was closed.
        """
        if self._closed:
            raise SessionClosedError(f"{self._label} is closed")
        self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((call, future.get_loop(), future))  # type: ignore[arg-type]
        return future

    def post(self, call: Callable[[C], object], failed: Callable[[BaseException], object]) -> None:
        """Queue ``call(connection)`` with no future: nothing wakes the loop when it is done.

        ``call`` answers its callers itself (the group commit's flush does). If it raises, or
        the connection could not be opened, ``failed(error)`` runs on the worker thread.

        Raises:
            SessionClosedError: the worker was closed.
        """
        if self._closed:
            raise SessionClosedError(f"{self._label} is closed")
        self.start()
        self._jobs.put((call, None, failed))

    def stop_nowait(self) -> None:
        """Stop the thread after the calls already queued, without waiting; idempotent.

        For a finalizer, which must neither block nor warn: the owner was collected unclosed,
        and said so itself.
        """
        if self._mark_closed():
            self._jobs.put(_Stop())

    async def run(self, call: Callable[[C], T]) -> T:
        """Run ``call(connection)`` on the worker thread and return its result.

        Raises:
            SessionClosedError: the worker was closed.
        """
        return await self.submit(call)

    def close(self) -> None:
        """Stop the thread after the calls already queued, and close the connection; idempotent.

        Blocks until the thread has finished.
        """
        if self._mark_closed():
            self._jobs.put(_Stop())
            self._thread.join()

    async def aclose(self) -> None:
        """Like ``close``, but waits for the thread without blocking the event loop."""
        if self._mark_closed():
            loop = asyncio.get_running_loop()
            done: asyncio.Future[object] = loop.create_future()
            self._jobs.put(_Stop((loop, done)))
            await done

    def _mark_closed(self) -> bool:
        """Close for new calls; True if the thread was started and must now be stopped."""
        if self._closed:
            return False
        self._closed = True
        if self._finalizer is None:
            return False
        self._finalizer.detach()
        return True
