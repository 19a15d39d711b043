"""The limiter's windows: made once a second, exact in which window a request counts, never
short in the reset they announce."""

from __future__ import annotations

import math

import pytest
import yaml

from router.budgets import Limiter
from router.budgets.store import MemoryStore
from router.errors import APIError
from router.policy.model import Policy

POLICY = """
tiers: {large: {type: openai, api_base: 'http://127.0.0.1:9/v1', model: m}}
routes: {auto: {cascade: [{tier: large}]}}
teams:
  t:
    limits: {requests_per_minute: 1, usd_per_day: 1}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> Limiter:
    policy = Policy.model_validate(yaml.safe_load(POLICY))
    return Limiter(policy, MemoryStore(clock), clock=clock, on_error=print)


async def test_a_request_counts_in_the_window_of_its_exact_time() -> None:
    clock = Clock(60 * 1_000_000 + 59.999)  # the last instant of a minute
    found = limiter(clock)
    await found.admit("t", "a", cost_of=lambda _: 1, tokens=1)
    with pytest.raises(APIError) as refused:  # the same second, the same minute: its 1 is used
        await found.admit("t", "b", cost_of=lambda _: 1, tokens=1)
    assert refused.value.status == 429
    clock.now = 60 * 1_000_001  # the next minute's first instant: a fresh window
    admitted = await found.admit("t", "c", cost_of=lambda _: 1, tokens=1)
    assert admitted.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize("into_the_second", [0.0, 0.2, 0.5, 0.999])
async def test_the_reset_announced_is_never_short(into_the_second: float) -> None:
    start = 60 * 1_000_000 + 17  # 17 s into a minute
    clock = Clock(start + into_the_second)
    admitted = await limiter(clock).admit("t", "a", cost_of=lambda _: 1, tokens=1)
    announced = int(admitted.headers["x-ratelimit-reset-requests"].removesuffix("s"))
    true_reset = 60 - 17 - into_the_second
    assert math.ceil(true_reset) <= announced <= math.ceil(true_reset) + 1
    assert announced == 43  # counted from the second's start: 1 s long at most
