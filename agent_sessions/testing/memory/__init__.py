"""The memory-store conformance checks, re-exported by :mod:`agent_sessions.testing`.

Each check takes a :class:`MemoryHarness`, opens stores through it (all on one database), works
under a namespace of its own, and raises :class:`~agent_sessions.testing.ConformanceError` (an
``AssertionError``) naming the broken promise. Time is a :class:`ManualClock` the check moves,
so TTL checks do not sleep.
"""

from __future__ import annotations

from ..checks import run_checks
from . import search_checks as search
from . import store_checks as store
from .harness import ManualClock, MemoryCheck, MemoryHarness

__all__ = ["MEMORY_CHECKS", "ManualClock", "MemoryCheck", "MemoryHarness", "run_memory_checks"]


MEMORY_CHECKS: list[MemoryCheck] = [
    store.check_put_get,
    store.check_overwrite_keeps_creation,
    store.check_delete,
    search.check_namespace_isolation,
    store.check_invalid_names_refused,
    store.check_unstorable_values_refused,
    store.check_unicode_and_large_values,
    store.check_returned_values_are_copies,
    search.check_listing_order_and_paging,
    search.check_filters,
    search.check_filter_paging,
    search.check_keyword_query,
    search.check_keyword_words_not_keys,
    store.check_ttl_expiry_and_sweep,
    store.check_ttl_refresh,
    search.check_list_namespaces,
    search.check_semantic_search,
    search.check_embedder_errors,
    search.check_async_embedder,
    store.check_closed_store_refuses,
    store.check_persistence,
    store.check_concurrent_puts,
]
"""Every memory-store check, in a stable order; each takes a :class:`MemoryHarness`."""


async def run_memory_checks(harness: MemoryHarness) -> dict[str, BaseException | None]:
    """Run every memory check against ``harness``; map each name to its failure or None."""
    return await run_checks(MEMORY_CHECKS, harness)
