"""A Redis client for the request path: bounded, quick to give up, never retrying by itself.

Budgets (router/budgets/store.py), the response cache (router/cache/stores.py) and the
shadow checks' shared cap and autotune windows (router/shadow/) each decide what an
unreachable Redis means; this only makes sure they find out fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio


def bounded_client(
    url: str, *, timeout_s: float, pool_wait_s: float, max_connections: int = 64
) -> redis.asyncio.Redis:
    """Many requests at once wait for one of `max_connections` (a plain pool refuses past
    its size); a wait longer than `pool_wait_s`, or a connect or reply slower than
    `timeout_s`, is an error at once (no retry, no background health checks)."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool


def background_client(url: str) -> redis.asyncio.Redis:
    """A small client for work off the request path (shadow checks' cap, autotune's
    windows): four connections, a second to answer."""
    return bounded_client(url, timeout_s=1.0, pool_wait_s=1.0, max_connections=4)


def redis_errors() -> tuple[type[Exception], ...]:
    """What an unreachable, slow or refusing Redis raises."""
    import redis

    return (redis.RedisError, OSError, TimeoutError)
