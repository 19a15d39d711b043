"""Retries within their budget and the circuit breaker, over scripted backends and a clock."""

from __future__ import annotations

import contextlib

import pytest

from router.backends.base import BackendError, GenerationParams, Message, Prompt
from router.backends.guard import GuardedBackend
from router.backends.spec import BreakerSpec, RetrySpec
from tests.support.fakes import FakeBackend, Script

PROMPT = Prompt(messages=(Message("user", "hi"),))
PARAMS = GenerationParams(max_tokens=4)
DOWN = Script(error=BackendError("unavailable", "connection refused"))
BAD_GATEWAY = Script(error=BackendError("error", "upstream answered 502", 502))
SERVER_ERROR = Script(error=BackendError("error", "upstream answered 500", 500))
TOO_LONG = Script(error=BackendError("rejected", "too long"))
RATE_LIMITED = Script(error=BackendError("error", "upstream answered 429", 429))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guarded(
    scripts: list[Script], clock: Clock, retries: int = 1, **breaker: float
) -> tuple[GuardedBackend, FakeBackend]:
    inner = FakeBackend("large", scripts)
    spec = BreakerSpec(**{"consecutive_failures": 3, "cooldown_s": 10, **breaker})  # type: ignore[arg-type]
    return GuardedBackend(inner, RetrySpec(max=retries, backoff_ms=0), spec, clock), inner


async def test_a_refused_connection_is_retried_once_and_recorded() -> None:
    guard, inner = guarded([DOWN, Script("ok")], Clock())
    completion = await guard.complete(PROMPT, PARAMS)
    assert (completion.text, completion.retries, inner.calls) == ("ok", 1, 2)


@pytest.mark.parametrize("script", [TOO_LONG, RATE_LIMITED])
async def test_what_is_not_retried(script: Script) -> None:
    """A request too large for the tier, and a 429 that advises no delay: fail over at once."""
    guard, inner = guarded([script, Script("ok")], Clock())
    with pytest.raises(BackendError) as error:
        await guard.complete(PROMPT, PARAMS)
    assert inner.calls == 1 and error.value.retries == 0


def _advised(status: int, seconds: float | None) -> Script:
    error = BackendError("error", f"upstream answered {status}", status)
    error.retry_after_s = seconds
    return Script(error=error)


async def test_a_500_once_is_retried() -> None:
    guard, inner = guarded([SERVER_ERROR, Script("ok")], Clock())
    completion = await guard.complete(PROMPT, PARAMS)
    assert (completion.text, completion.retries, inner.calls) == ("ok", 1, 2)


async def test_a_retry_after_is_waited_out_when_short_and_failed_over_when_long() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    for status in (429, 503):
        guard, inner = guarded([_advised(status, 0.5), Script("ok")], Clock())
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("router.backends.guard.asyncio.sleep", sleep)
            completion = await guard.complete(PROMPT, PARAMS)
        assert (completion.text, inner.calls, slept[-1]) == ("ok", 2, 0.5)
        guard, inner = guarded([_advised(status, 30), Script("ok")], Clock())
        with pytest.raises(BackendError) as error:
            await guard.complete(PROMPT, PARAMS)  # 30 s > retry_after_max_s: fail over now
        assert inner.calls == 1 and error.value.retries == 0


async def test_a_half_open_probe_is_never_retried() -> None:
    clock = Clock()
    guard, inner = guarded([DOWN] * 5 + [Script("ok")], clock, consecutive_failures=1)
    with pytest.raises(BackendError):
        await guard.complete(PROMPT, PARAMS)  # tried, retried once, failed: open
    assert (guard.breaker.state, inner.calls) == ("open", 2)
    clock.now += 11  # the cool-down passed: the next call is the probe
    with pytest.raises(BackendError):
        await guard.complete(PROMPT, PARAMS)
    assert inner.calls == 3  # one hit on a provider known to be down, not two
    assert guard.breaker.state == "open"


async def test_retries_stay_within_the_budget() -> None:
    """200 calls to a tier that refuses every first try: at most 20% extra calls (plus the
    3 any window allows)."""
    clock = Clock()
    guard, inner = guarded(
        [DOWN, Script("ok")] * 200,
        clock,
        consecutive_failures=10**6,
        failure_rate=1.0,
        min_calls=10**6,
    )
    for _ in range(200):
        clock.now += 0.01
        with contextlib.suppress(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert 200 < inner.calls <= 200 * 1.2 + 3
    assert guard.retried == inner.calls - 200


async def test_the_breaker_opens_skips_and_recovers_through_one_probe() -> None:
    clock = Clock()
    guard, inner = guarded([SERVER_ERROR] * 3 + [Script("ok")], clock, retries=0)
    for _ in range(3):
        with pytest.raises(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert guard.state == "open" and inner.calls == 3
    for _ in range(5):  # skipped at once while open: the upstream sees nothing
        with pytest.raises(BackendError, match="circuit breaker is open") as skipped:
            await guard.complete(PROMPT, PARAMS)
        assert skipped.value.kind == "unavailable"
    assert inner.calls == 3
    clock.now += 10
    assert guard.state == "half_open"
    assert (await guard.complete(PROMPT, PARAMS)).text == "ok"  # the probe
    assert guard.state == "ready" and inner.calls == 4


async def test_a_failed_probe_opens_it_again_and_only_the_probes_get_through() -> None:
    clock = Clock()
    guard, inner = guarded([SERVER_ERROR], clock, retries=0, half_open_probes=2)
    for _ in range(3):
        with pytest.raises(BackendError):
            await guard.complete(PROMPT, PARAMS)
    clock.now += 10
    for _ in range(4):
        with pytest.raises(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert inner.calls == 3 + 1  # the first probe failed: open again, the rest skipped
    assert guard.breaker.opened == 2 and guard.state == "open"


async def test_a_failure_rate_opens_it_without_consecutive_failures() -> None:
    clock = Clock()
    scripts = [SERVER_ERROR, Script("ok")] * 20
    guard, inner = guarded(
        scripts, clock, retries=0, consecutive_failures=100, failure_rate=0.5, min_calls=10
    )
    for _ in range(10):
        clock.now += 0.1
        with contextlib.suppress(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert guard.state == "open" and inner.calls == 10


async def test_rejections_and_rate_limits_count_as_they_should() -> None:
    clock = Clock()
    guard, _ = guarded([TOO_LONG] * 5 + [RATE_LIMITED] * 3, clock, retries=0)
    for _ in range(5):
        with pytest.raises(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert guard.state == "ready"  # a prompt too long for the tier says nothing of its health
    for _ in range(3):
        with pytest.raises(BackendError):
            await guard.complete(PROMPT, PARAMS)
    assert guard.state == "open"  # 429s do


async def test_a_stream_is_retried_only_before_its_first_event() -> None:
    guard, inner = guarded([DOWN, Script("one two three", None, break_after=1)], Clock())
    stream = guard.stream(PROMPT, PARAMS)
    first = await anext(stream)
    assert (first.text, first.retries, inner.calls) == ("one", 1, 2)
    with pytest.raises(BackendError):
        await anext(stream)
    assert inner.calls == 2  # broken after the first event: not retried
