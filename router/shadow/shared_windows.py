"""autotune's window of checks and tuned threshold in Redis (`autotune.store: redis`), shared
by every worker and replica on the same Redis, and kept across restarts.

Per route step, a list holds the latest `window` checks (`value:0|1`) of one acceptance
method and model, with a counter of checks since the last re-tuning; the tuned threshold
is a key of its own per policy step and bounds, so a process serving another version of the
step (a rollout in progress) neither reads nor overwrites it. One Lua script adds a check,
and, when a round is complete, resets the counter and hands the window to that one caller —
so exactly one process re-tunes per round. Keys expire after 30 days without checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from router.redis_pool import background_client, redis_errors

if TYPE_CHECKING:
    import redis.asyncio

    from router.shadow.autotune import Observed

_KEEP_S = 30 * 86_400
_OBSERVE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
local fresh = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local current = redis.call('GET', KEYS[3]) or ''
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) and fresh >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], 0, 'EX', ARGV[5])
  return {current, redis.call('LRANGE', KEYS[1], 0, -1)}
end
return {current}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SharedWindows:
    def __init__(self, url: str, on_error: Callable[[Exception], None]) -> None:
        self._client: redis.asyncio.Redis = background_client(url)
        self._observe = self._client.register_script(_OBSERVE)
        self._on_error = on_error
        self._errors = redis_errors()

    @staticmethod
    def keys(check: Observed) -> list[str]:
        spec, autotune = check.spec, check.autotune
        scale = f"cascade:autotune:{check.route}:{check.tier}:{spec.method}:{spec.model or '-'}"
        bounds = f"{spec.threshold!r}:{autotune.min_threshold!r}:{autotune.max_threshold!r}"
        return [f"{scale}:window", f"{scale}:fresh", f"{scale}:{bounds}:threshold"]

    async def observe(
        self, check: Observed
    ) -> tuple[float | None, list[tuple[float, bool]] | None] | None:
        """Add a check. Returns the shared threshold (None: none yet) and, when this check
        completed a round, the window to re-tune on; None when Redis cannot be reached."""
        autotune = check.autotune
        try:
            reply = await self._observe(
                keys=self.keys(check),
                args=[
                    f"{check.value:.6f}:{int(check.agree)}",
                    autotune.window,
                    autotune.min_checks,
                    autotune.every_checks,
                    _KEEP_S,
                ],
            )
        except self._errors as exc:
            self._on_error(exc)
            return None
        current = float(_text(reply[0])) if _text(reply[0]) else None
        if len(reply) < 2:
            return current, None
        values = []
        for entry in reply[1]:
            number, agreed = _text(entry).rsplit(":", 1)
            values.append((float(number), agreed == "1"))
        return current, values

    async def publish(self, check: Observed, threshold: float) -> bool:
        """Set the shared threshold (False: Redis cannot be reached; nothing changed)."""
        try:
            await self._client.set(self.keys(check)[2], repr(threshold), ex=_KEEP_S)
        except self._errors as exc:
            self._on_error(exc)
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
