"""Budgets and rate limits per team: the store of counters (router/budgets/store.py) and the
limiter that admits, shapes and settles requests by them (router/budgets/limiter.py)."""

from __future__ import annotations

from collections.abc import Callable

from router.budgets.limiter import Admission, Limiter
from router.budgets.store import FailOpen, MemoryStore, RedisStore, Store

__all__ = ["Admission", "Limiter", "open_store"]


def open_store(
    kind: str, on_error: str, redis_url: str | None, report: Callable[[Exception], None]
) -> Store:
    """The counters a policy's `budgets` names (Redis needs CASCADE_REDIS_URL)."""
    if kind == "memory":
        return MemoryStore()
    if not redis_url:
        raise ValueError("budgets.store is redis but CASCADE_REDIS_URL is not set")
    shared = RedisStore(redis_url)
    return FailOpen(shared, MemoryStore(), report) if on_error == "fail_open" else shared
