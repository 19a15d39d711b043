"""autotune.store: redis (a real redis-server): processes sharing one window re-tune exactly
as one process seeing every check would, record each change once, follow each other's
threshold, and a restarted process takes the shared threshold up at once."""

from __future__ import annotations

import numpy as np

from router.policy.model import AcceptanceSpec, AutotuneSpec
from router.shadow.autotune import Observed, Tuner, TuneRecord
from router.shadow.shared_windows import SharedWindows
from tests.support.redis_server import RedisServer

STEP = AcceptanceSpec(method="mean_prob", threshold=0.5)


AUTOTUNE = AutotuneSpec(
    min_threshold=0.2,
    max_threshold=0.8,
    min_checks=20,
    window=40,
    every_checks=10,
    max_step=0.1,
    store="redis",
)


def _checks(n: int) -> list[tuple[float, bool]]:
    rng = np.random.default_rng(5)
    return [(float(v), bool(rng.random() < v**2)) for v in rng.random(n)]


def _sure(spec: AcceptanceSpec, version: str) -> Observed:
    """A right answer with a high value: a check that moves nothing by itself."""
    return Observed("shared", "small", 0.99, True, spec, AUTOTUNE, 0.9, version)


def _process(redis: RedisServer, records: list[TuneRecord], errors: list[Exception]) -> Tuner:
    return Tuner(records.append, lambda _: None, SharedWindows(redis.url, errors.append))


async def test_processes_sharing_a_window_tune_as_one_process_would(redis: RedisServer) -> None:
    autotune = AUTOTUNE
    checks = _checks(90)
    # one process that sees every check, with its own window
    alone: list[TuneRecord] = []
    single = Tuner(alone.append, lambda _: None)
    local = autotune.model_copy(update={"store": "memory"})
    for value, agree in checks:
        single.observe(Observed("shared", "small", value, agree, STEP, local, 0.9, "v1"))
    assert len(alone) >= 3  # the target moves the threshold several times
    # three processes, the checks dealt out between them in turn
    records: list[TuneRecord] = []
    errors: list[Exception] = []
    tuners = [_process(redis, records, errors) for _ in range(3)]
    try:
        for n, (value, agree) in enumerate(checks):
            await tuners[n % 3].observe_shared(
                Observed("shared", "small", value, agree, STEP, autotune, 0.9, "v1")
            )
        assert [(r.threshold_from, r.threshold_to) for r in records] == [
            (r.threshold_from, r.threshold_to) for r in alone
        ]  # one record per change, whichever process made it
        assert [r.checks for r in records] == [r.checks for r in alone]
        final = alone[-1].threshold_to
        for tuner in tuners:  # each takes the shared threshold up with its next check
            await tuner.observe_shared(_sure(STEP, "v1"))
        in_force = {t.acceptance("shared", "small", STEP, autotune).threshold for t in tuners}
        assert len(in_force) == 1 and abs(in_force.pop() - final) <= 0.1 + 1e-9
        # a restarted process follows at its first check, without waiting for min_checks
        restarted = _process(redis, records, errors)
        tuners.append(restarted)
        assert restarted.acceptance("shared", "small", STEP, autotune) is STEP
        await restarted.observe_shared(_sure(STEP, "v1"))
        shared = tuners[0].acceptance("shared", "small", STEP, autotune).threshold
        assert restarted.acceptance("shared", "small", STEP, autotune).threshold == shared
        # a process serving another version of the step keeps its own threshold
        edited = STEP.model_copy(update={"threshold": 0.6})
        await restarted.observe_shared(_sure(edited, "v2"))
        assert restarted.acceptance("shared", "small", edited, autotune) is edited
    finally:
        for tuner in tuners:
            await tuner.aclose()
    assert errors == []


async def test_an_unreachable_store_leaves_the_threshold_alone() -> None:
    errors: list[Exception] = []
    records: list[TuneRecord] = []
    tuner = Tuner(
        records.append, lambda _: None, SharedWindows("redis://127.0.0.1:1/0", errors.append)
    )
    autotune = AUTOTUNE
    try:
        for value, agree in _checks(25):
            assert (
                await tuner.observe_shared(
                    Observed("down", "small", value, agree, STEP, autotune, 0.9, "v1")
                )
                is None
            )
    finally:
        await tuner.aclose()
    assert len(errors) == 25 and records == []
    assert tuner.acceptance("down", "small", STEP, autotune) is STEP
