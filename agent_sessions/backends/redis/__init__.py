"""The Redis backend: :class:`RedisSession` (the SDK's drop-in) over :class:`RedisStore`.

Needs the ``redis`` extra (``pip install 'agent-sessions[redis]'``): the official client's
asyncio API.
"""

from __future__ import annotations

from .session import RedisSession
from .store import RedisStore

__all__ = ["RedisSession", "RedisStore"]
