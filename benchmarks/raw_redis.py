"""The floor for the Redis suite: the redis client running our store's commands, no session layer.

``get_items`` is one ``EVALSHA`` of our read script (values packed into one string) and one
``json.loads`` of them joined; ``add_items`` is one ``EVALSHA`` of
our append script; ``pop_item`` reads the tail and splices it with our two scripts, as our store
does. What is left out is everything a session adds: validation, limits, the codec's checks,
undecodable-row handling, lifecycle.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis.asyncio as aioredis

from agent_sessions.backends.redis import scripts
from agent_sessions.backends.redis.layout import SessionKeys, unpack

__all__ = ["RawRedisSession"]

_READ_SHA = hashlib.sha1(scripts.READ.encode()).hexdigest()  # noqa: S324 - script ids
_APPEND_SHA = hashlib.sha1(scripts.APPEND.encode()).hexdigest()  # noqa: S324
_TAIL_SHA = hashlib.sha1(scripts.TAIL.encode()).hexdigest()  # noqa: S324
_SPLICE_SHA = hashlib.sha1(scripts.SPLICE.encode()).hexdigest()  # noqa: S324
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class RawRedisSession:
    """One session's commands on a shared client (load the scripts once with :func:`load`)."""

    def __init__(self, session_id: str, client: aioredis.Redis, prefix: str) -> None:
        self.session_id = session_id
        self.client = client
        self.keys = SessionKeys(prefix, session_id).all()

    @staticmethod
    async def load(client: aioredis.Redis) -> None:
        """Cache the scripts on the server, so ``EVALSHA`` finds them."""
        for source in (scripts.READ, scripts.APPEND, scripts.TAIL, scripts.SPLICE):
            await client.script_load(source)

    async def get_items(self, limit: int | None = None) -> list[Any]:
        start = 0 if limit is None else -limit
        lens, blob = await self.client.evalsha(_READ_SHA, 1, self.keys[1], start)
        values = unpack(lens, blob)
        return json.loads(b"[" + b",".join(values) + b"]") if values else []

    async def add_items(self, items: list[Any]) -> None:
        texts = [_DUMPS(item) for item in items]
        keys = self.keys
        await self.client.evalsha(_APPEND_SHA, len(keys), *keys, self.session_id, "", *texts)

    async def pop_item(self) -> Any:
        total, lens, blob, _ = await self.client.evalsha(_TAIL_SHA, len(self.keys), *self.keys, 1)
        values = unpack(lens, blob)
        if not values:
            return None
        raw = values[-1]
        digest = hashlib.sha1(raw).hexdigest()  # noqa: S324 - a fingerprint
        args = (total, total, 1, digest, "", "0", self.session_id, 0, "", "", 0)
        if not await self.client.evalsha(_SPLICE_SHA, len(self.keys), *self.keys, *args):
            return await self.pop_item()
        return json.loads(raw)

    async def clear_session(self) -> None:
        await self.client.delete(*self.keys)

    def close(self) -> None:
        """Nothing to release: the client belongs to the run."""
