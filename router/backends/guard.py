"""Per-tier protection around any remote backend: retries within a budget, and a circuit
breaker.

- **Retries**: a failure before the first byte reached anyone (connection refused or reset,
  an upstream status in `retries.statuses`: 500/502/503/504 and 429) is retried, at most
  `retries.max` times per call, and only while retries stay within `retries.budget` of the
  tier's recent calls (Envoy's retry budget: a struggling upstream is not hit harder), after
  `backoff_ms` with jitter, or the delay the upstream advised (`Retry-After`,
  `retry-after-ms`) when that is within `retry_after_max_s`; a longer one, or a 429 that
  advises nothing, fails over at once. A half-open breaker's probe is never retried.
- **Breaker**: `consecutive_failures` failures in a row, or a failure rate of at least
  `failure_rate` over the last `window_s` (with `min_calls` calls), open it; while open the
  tier is skipped at once, as an unreachable one (fallbacks, or the best answer so far);
  after `cooldown_s` it lets `half_open_probes` calls through: a success closes it, a
  failure opens it again. Failures are errors, timeouts, unreachable, cut-off streams and
  429s; a request the tier rejects as too large, or our own shedding, is no failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

from router.backends.base import (
    Backend,
    BackendError,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
    TierState,
)
from router.backends.spec import BreakerSpec, RetrySpec

BreakerState = Literal["closed", "open", "half_open"]
_T = TypeVar("_T")
_NOT_FAILURES = frozenset({"rejected", "shed"})


def is_failure(error: BackendError) -> bool:
    return error.kind not in _NOT_FAILURES and (
        error.status is None or error.status >= 500 or error.status == 429
    )


def retry_delay(error: BackendError, spec: RetrySpec) -> float | None:
    """How long to wait before retrying after `error`; None: not worth retrying (fail over).
    A connection that failed is retried; an upstream status the tier lists is retried after
    the delay it advised when that is within `retry_after_max_s` (never retried: a longer
    one, or a 429 that advised nothing)."""
    if error.kind == "unavailable":
        return 0.0
    if error.kind != "error" or error.status not in spec.statuses:
        return None
    advised = error.retry_after_s
    if advised is None:
        return None if error.status == 429 else 0.0
    return advised if advised <= spec.retry_after_max_s else None


class _Window:
    """Counts of events over the last `seconds`, kept in 30 buckets: memory and time per
    event stay constant whatever the request rate."""

    _BUCKETS = 30

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._width = seconds / self._BUCKETS
        self._clock = clock
        self._buckets: deque[list[float]] = deque()  # [start, events, flagged]
        self._events = 0
        self._flagged = 0

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while buckets and buckets[0][0] + self._width <= now - self._seconds:
            _, events, flagged = buckets.popleft()
            self._events -= int(events)
            self._flagged -= int(flagged)

    def add(self, flag: bool = True) -> None:
        now = self._clock()
        self._expire(now)
        if not self._buckets or now >= self._buckets[-1][0] + self._width:
            self._buckets.append([now, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += flag
        self._events += 1
        self._flagged += flag

    def counts(self) -> tuple[int, int]:
        """(events, flagged events) in the window (to a bucket's width)."""
        self._expire(self._clock())
        return self._events, self._flagged


class Breaker:
    def __init__(self, spec: BreakerSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.state: BreakerState = "closed"
        self._clock = clock
        self._consecutive = 0
        self._outcomes = _Window(spec.window_s, clock)
        self._opened_at = 0.0
        self._probes = 0
        self.opened = 0  # times it opened

    def allow(self) -> bool:
        """Whether a call may go to the tier now (a half-open breaker admits its probes)."""
        if self.state == "open":
            if self._clock() - self._opened_at < self.spec.cooldown_s:
                return False
            self.state, self._probes = "half_open", 0
        if self.state == "half_open":
            if self._probes >= self.spec.half_open_probes:
                return False
            self._probes += 1
        return True

    def release(self) -> None:
        """A call admitted but abandoned (its client left): it decided nothing."""
        if self.state == "half_open" and self._probes > 0:
            self._probes -= 1

    def retry_in(self) -> float:
        return max(0.0, self.spec.cooldown_s - (self._clock() - self._opened_at))

    def record(self, failed: bool) -> None:
        if self.state == "half_open":
            if failed:
                self._open()
            else:
                self.state, self._consecutive = "closed", 0
                self._outcomes = _Window(self.spec.window_s, self._clock)
            return
        self._outcomes.add(failed)
        self._consecutive = self._consecutive + 1 if failed else 0
        calls, failures = self._outcomes.counts()
        rate_tripped = calls >= self.spec.min_calls and failures / calls >= self.spec.failure_rate
        if self._consecutive >= self.spec.consecutive_failures or rate_tripped:
            self._open()

    def _open(self) -> None:
        self.state, self._opened_at, self._consecutive = "open", self._clock(), 0
        self.opened += 1


class GuardedBackend:
    """A backend behind its tier's retries and breaker; the same Backend contract."""

    def __init__(
        self,
        inner: Backend,
        retries: RetrySpec,
        breaker: BreakerSpec,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.retries = retries
        self.breaker = Breaker(breaker, clock)
        self._calls = _Window(retries.window_s, clock)
        self.retried = 0  # retries made

    @property
    def queue_depth(self) -> int:
        return self.inner.queue_depth

    @property
    def state(self) -> TierState:
        if self.breaker.state == "open" and self.breaker.retry_in() <= 0:
            return "half_open"  # the next call is a probe
        return "ready" if self.breaker.state == "closed" else self.breaker.state

    async def count_tokens(self, prompt: Prompt) -> int | None:
        return await self.inner.count_tokens(prompt)

    def _admit(self) -> None:
        if not self.breaker.allow():
            raise BackendError(
                "unavailable",
                f"tier '{self.name}' is off: its circuit breaker is open "
                f"(retry in {self.breaker.retry_in():.1f} s)",
            )

    def _retry_in(self, error: BackendError, attempt: int, probe: bool) -> float | None:
        """Seconds before the call is retried; None: it is not (a half-open breaker's probe
        never is: one call says whether the tier is back)."""
        delay = retry_delay(error, self.retries)
        if probe or attempt >= self.retries.max or delay is None:
            return None
        calls, retries = self._calls.counts()
        allowed = max(self.retries.min_budget, self.retries.budget * (calls - retries))
        return delay if retries < allowed else None

    async def _backoff(self, advised: float) -> None:
        self.retried += 1
        self._calls.add(True)
        jittered = self.retries.backoff_ms / 1000 * random.uniform(0.5, 1.5)  # noqa: S311
        if wait := max(advised, jittered):
            await asyncio.sleep(wait)

    async def _retried(self, call: Callable[[], Awaitable[_T]]) -> tuple[_T, int]:
        """`call` until it succeeds, fails in a way not worth retrying, or the budget says
        no; returns its result and the retries made. The breaker hears each final failure
        (the caller records a success once it knows it is one)."""
        self._admit()
        probe = self.breaker.state == "half_open"
        self._calls.add(False)
        attempt = 0
        while True:
            try:
                return await call(), attempt
            except BackendError as exc:
                delay = self._retry_in(exc, attempt, probe)
                if delay is not None:
                    attempt += 1
                    await self._backoff(delay)
                    continue
                self.breaker.record(is_failure(exc))
                exc.retries = attempt
                raise
            except asyncio.CancelledError:
                self.breaker.release()
                raise

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        completion, retries = await self._retried(lambda: self.inner.complete(prompt, params))
        self.breaker.record(False)
        completion.retries = retries
        return completion

    async def _open(
        self, prompt: Prompt, params: GenerationParams
    ) -> tuple[AsyncGenerator[StreamEvent, None], StreamEvent]:
        source = self.inner.stream(prompt, params)
        try:
            return source, await anext(source)
        except StopAsyncIteration:
            await source.aclose()
            raise BackendError("truncated", f"tier '{self.name}' sent an empty stream") from None
        except BaseException:
            await source.aclose()
            raise

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        """Retried only until its first event: after that, what was sent stays sent."""
        (source, first), attempt = await self._retried(lambda: self._open(prompt, params))
        first.retries = attempt
        failed = False
        try:
            yield first
            async for event in source:
                yield event
        except BackendError as exc:
            failed = is_failure(exc)
            raise
        finally:
            await source.aclose()
            self.breaker.record(failed)

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        answer, _ = await self._retried(lambda: self.inner.embed(body))
        self.breaker.record(False)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()
