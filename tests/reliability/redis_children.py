"""What the Redis reliability tests run in child processes, through the public API only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent_sessions import RedisSession

__all__ = ["redis_writer"]


def redis_writer(
    url: str, prefix: str, writer: int, *, batches: int, report: str, start: Any
) -> None:
    """Add ``batches`` batches of three to session "shared", popping after every fifth one.

    Writes a JSON report: the contents this writer popped.
    """
    start.wait()
    popped: list[str] = []

    async def run() -> None:
        async with RedisSession.from_url("shared", url=url, key_prefix=prefix) as session:
            for b in range(batches):
                batch = [{"role": "user", "content": f"{writer}-{b}-{k}"} for k in range(3)]
                await session.add_items(batch)  # type: ignore[arg-type]
                if b % 5 == 4:
                    item = await session.pop_item()
                    if item is not None:
                        popped.append(str(item.get("content")))

    asyncio.run(run())
    Path(report).write_text(json.dumps(popped))
