"""RedisSession: a drop-in for ``agents.extensions.memory.RedisSession`` on our store layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from agents.memory.session_settings import SessionSettings
from redis.asyncio.cluster import RedisCluster

from ...core import StoreSession, check_session_id
from .store import RedisStore

if TYPE_CHECKING:
    from typing import Self

__all__ = ["RedisSession"]


def _check_ttl(ttl: object) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise TypeError(f"ttl must be None or an int of seconds, got {type(ttl).__name__}")
    if not 0 < ttl <= 2**42:
        raise ValueError(f"ttl must be between 1 and 2**42 seconds, got {ttl}")
    return ttl


class RedisSession(StoreSession):
    """A session on a Redis server, readable and writable by the SDK's ``RedisSession``.

    The keys are the SDK's: ``{key_prefix}:{session_id}`` (a hash with ``session_id``,
    ``created_at`` and ``updated_at``), ``{key_prefix}:{session_id}:messages`` (a list of the
    items' compact JSON, oldest first) and ``{key_prefix}:{session_id}:counter``. Each write is one
    Lua script: ``add_items`` stores the whole batch or nothing, two concurrent ``pop_item`` calls
    never return the same item, and an undecodable value is skipped with a warning (raised when
    ``strict``), never returned and never deleted. Needs Redis 7 or later (standalone).

    Args:
        session_id: The conversation this object reads and writes.
        redis_client: A ``redis.asyncio.Redis`` client; the session does not close it.
        key_prefix: Prefix of the session's keys, as the SDK's.
        ttl: Seconds after the latest ``add_items`` until the session's keys expire; None
            (the default) keeps them.
        session_settings: Read defaults, as a ``SessionSettings`` or a dict of its fields.
        strict: Raise :class:`~agent_sessions.errors.CorruptItemError` on an undecodable value
            instead of skipping it with a logged warning.
        store: A :class:`RedisStore` to share instead of making one over ``redis_client``
            (its client, prefix and TTL are used; the session leaves it open).

    Raises:
        TypeError: ``redis_client`` is a ``RedisCluster`` (scripts need one server), or ``ttl``
            is not an int.
        ValueError: ``ttl`` is not positive.

    Example:
        >>> from agent_sessions import RedisSession
        >>> session = RedisSession.from_url("user-42", url="redis://localhost:6379/0")
    """

    def __init__(
        self,
        session_id: str,
        *,
        redis_client: aioredis.Redis | RedisCluster | None = None,
        key_prefix: str = "agents:session",
        ttl: int | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        strict: bool = False,
        store: RedisStore | None = None,
    ) -> None:
        check_session_id(session_id)
        if store is None:
            if redis_client is None:
                raise TypeError("RedisSession needs a redis_client (or a store)")
            if isinstance(redis_client, RedisCluster):
                raise TypeError(
                    "RedisSession needs a standalone server: its writes are Lua scripts over "
                    "three keys, which a RedisCluster client cannot run in one slot"
                )
            store = RedisStore(redis_client, key_prefix=key_prefix, ttl=_check_ttl(ttl))
            owns_store = True
        else:
            owns_store = False
        self.key_prefix = store.key_prefix
        self.ttl = store.ttl
        self._redis_store = store
        super().__init__(
            session_id,
            store,
            owns_store=owns_store,
            session_settings=session_settings,
            strict=strict,
        )

    @classmethod
    def from_url(
        cls,
        session_id: str,
        *,
        url: str,
        redis_kwargs: dict[str, Any] | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Open a session on the server at ``url``, with a client the session owns and closes.

        Args:
            session_id: The conversation this object reads and writes.
            url: A Redis URL, such as ``"redis://localhost:6379/0"`` or ``"rediss://host:6380"``.
            redis_kwargs: Passed on to ``redis.asyncio.from_url``.
            session_settings: Read defaults, as a ``SessionSettings`` or a dict of its fields.
            **kwargs: The constructor's other keywords (``key_prefix``, ``ttl``, ``strict``).

        Returns:
            The session; closing it closes the client.
        """
        check_session_id(session_id)
        ttl = _check_ttl(kwargs.pop("ttl", None))
        key_prefix = kwargs.pop("key_prefix", "agents:session")
        client = aioredis.from_url(url, **(redis_kwargs or {}))
        store = RedisStore(client, key_prefix=key_prefix, ttl=ttl, owns_client=True)
        session = cls(session_id, session_settings=session_settings, store=store, **kwargs)
        session._owns_store = True
        return session

    @property
    def redis_client(self) -> aioredis.Redis:
        """The client the session's commands go through."""
        return self._redis_store.client

    async def ping(self) -> bool:
        """Check that the server answers.

        Returns:
            True if a ``PING`` got its reply, False if the server could not be reached.

        Raises:
            SessionClosedError: the session is closed (a ``RuntimeError``).
        """
        self._check_open("ping")
        return await self._redis_store.ping()
