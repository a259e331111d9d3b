"""``async with`` support for every resource that closes with ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing"]

_R = TypeVar("_R", bound="AsyncClosing")


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
