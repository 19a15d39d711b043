"""Budgets and rate limits per team: the store of counters (router/budgets/store.py) and the
limiter that admits, shapes and settles requests by them (router/budgets/limiter.py)."""

from __future__ import annotations

from collections.abc import Callable

from router.budgets.leases import LeasedStore
from router.budgets.limiter import Admission, Limiter
from router.budgets.store import FailOpen, MemoryStore, RedisStore, Store
from router.policy.model import BudgetsSpec

__all__ = ["Admission", "Limiter", "open_store"]


def open_store(
    spec: BudgetsSpec, redis_url: str | None, report: Callable[[Exception], None]
) -> Store:
    """The counters a policy's `budgets` names (Redis needs CASCADE_REDIS_URL): in Redis,
    admitted from leases unless `budgets.leases.enabled` is false."""
    if spec.store == "memory":
        return MemoryStore()
    if not redis_url:
        raise ValueError("budgets.store is redis but CASCADE_REDIS_URL is not set")
    lease = spec.leases
    shared: Store = (
        LeasedStore(
            redis_url,
            ttl_s=lease.ttl_s,
            flush_s=lease.flush_s,
            fraction=lease.fraction,
            max_requests=lease.max_requests,
            rate_window_s=spec.rate_window_s,
        )
        if lease.enabled
        else RedisStore(redis_url)
    )
    return FailOpen(shared, MemoryStore(), report) if spec.on_store_error == "fail_open" else shared
