"""Shadow checks' parts: the judges, the runner's sampling, queue, daily cap and records, and
what `cascade audit` makes of the records (agreement with a 95% interval, the target)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from classifiers.features import PROMPT_NAMES
from router.audit.aggregate import Aggregator
from router.audit.report import figures, wilson
from router.audit.text import cell
from router.backends.base import BackendError, Completion, GenerationParams, Message, Prompt
from router.backends.spec import PriceSpec
from router.policy.model import ShadowSpec
from router.shadow.judges import exact, json_equal, llm_judge_prompt, normalized, read_judgement
from router.shadow.runner import ShadowJob, ShadowRecord, ShadowRunner, features_of
from tests.support.fakes import FakeBackend, Script


@pytest.mark.parametrize(
    ("local", "reference", "verdict"),
    [
        ("Paris", "The capital of France is Paris.", "agree"),
        ("paris!", "Paris", "agree"),
        ("The answer is 1,200.", "1200", "agree"),
        ("So 3 + 4 = 7. The answer is 7", "Answer: 7", "agree"),
        ("The answer is 8", "7", "disagree"),
        ("B", "The answer is (B)", "agree"),
        ("(C)", "The answer is B", "disagree"),
        ("A. blue, B. red", "B", "disagree"),  # the local answer's letter is A
        ("A", "A", "agree"),  # an option "A" is not the article "a"
        ("(A) blue", "The answer is A.", "agree"),
        ("The answer is A cat", "A cat", "agree"),  # prose that starts with "A" is not a letter
        ("There were 3 apples and 4 pears, 7 in all.", "7", "agree"),
        ("London", "Paris", "disagree"),
        ("anything", "  ", "inconclusive"),
    ],
)
def test_the_normalized_judge(local: str, reference: str, verdict: str) -> None:
    assert normalized(local, reference) == verdict


def test_the_exact_and_json_judges() -> None:
    assert exact(" yes", "yes ") == "agree" and exact("Yes", "yes") == "disagree"
    assert json_equal('{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}') == "agree"
    assert json_equal('{"a": 2}', '{"a": 1}') == "disagree"
    assert json_equal("not json", '{"a": 1}') == "disagree"
    assert json_equal('{"a": 1}', "the upstream wrote prose") == "inconclusive"


def test_the_wilson_interval() -> None:
    low, high = wilson(8, 10) or (0.0, 0.0)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None
    low, high = wilson(50, 50) or (0.0, 0.0)
    assert high == pytest.approx(1.0) and 0.92 < low < 0.94


def _job(backend: Any, spec: ShadowSpec, *, route: str = "auto", cost: float = 1e-4) -> ShadowJob:
    local = Completion("Paris", "stop", 5, 1, "small-model", token_logprobs=[-0.1])
    record = ShadowRecord(
        request_id="shadow-1",
        shadow_of="req-1",
        team="t",
        route=route,
        policy_version="v",
        judge=spec.judge,
        local_tier="small",
        local_model="small-model",
        reference_tier="large",
        features=features_of("What is the capital of France?", local),
    )
    prompt = Prompt(messages=(Message("user", "What is the capital of France?"),))
    price = PriceSpec(input_per_1m=1.0, output_per_1m=2.0)
    return ShadowJob(
        record,
        spec,
        prompt,
        GenerationParams(16),
        "Paris",
        backend=backend,
        price=price,
        max_cost_usd=cost,
    )


async def _settled(runner: ShadowRunner, records: list[ShadowRecord], count: int) -> None:
    for _ in range(200):
        if len(records) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{len(records)} of {count} checks finished")


async def test_a_check_records_its_verdict_cost_and_features_never_the_prompt() -> None:
    records: list[ShadowRecord] = []
    counted: list[tuple[str, str]] = []
    runner = ShadowRunner(records.append, lambda r, v: counted.append((r, v)))
    runner.start()
    try:
        spec = ShadowSpec(rate=1.0, usd_per_day=1.0)
        large = FakeBackend("large", [Script("It is Paris.", None), Script("Lyon", None)])
        assert runner.offer(_job(large, spec)) and runner.offer(_job(large, spec))
        await _settled(runner, records, 2)
    finally:
        await runner.aclose()
    assert sorted(r.verdict for r in records) == ["agree", "disagree"]
    first = records[0]
    assert first.kind == "shadow" and first.shadow_of == "req-1" and first.prompt is None
    assert first.cost_usd > 0 and first.reference_model == "large-model"
    assert len(first.features["prompt"]) == len(PROMPT_NAMES)
    assert sorted(counted) == [("auto", "agree"), ("auto", "disagree")]


async def test_the_queue_and_the_daily_cap_bound_what_checks_cost() -> None:
    records: list[ShadowRecord] = []
    counted: list[tuple[str, str]] = []
    runner = ShadowRunner(records.append, lambda r, v: counted.append((r, v)))
    spec = ShadowSpec(rate=1.0, usd_per_day=2.5e-4, queue=3)
    large = FakeBackend("large", [Script("Paris", None)])
    offered = [runner.offer(_job(large, spec, cost=1e-4)) for _ in range(4)]
    assert offered == [True, True, True, False]  # the queue holds 3; not started yet
    runner.start()
    try:
        for _ in range(200):
            if len(counted) >= 4:
                break
            await asyncio.sleep(0.005)
    finally:
        await runner.aclose()
    results = sorted(result for _, result in counted)
    # each check holds its maximum (1e-4) until its real cost (~1.2e-5) is known
    assert results.count("dropped") == 1 and len(records) == 3 and "capped" not in results


class _Held:
    """A reference tier that answers when released (a check in flight)."""

    model = "held-model"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        await self.release.wait()
        return Completion("Paris", "stop", 10, 2, self.model)


async def test_a_check_in_flight_holds_its_maximum_against_the_day() -> None:
    records: list[ShadowRecord] = []
    counted: list[tuple[str, str]] = []
    runner = ShadowRunner(records.append, lambda r, v: counted.append((r, v)))
    tight = ShadowSpec(rate=1.0, usd_per_day=1.5e-4)  # room for one check's maximum
    held = _Held()
    runner.offer(_job(held, tight))
    runner.offer(_job(held, tight))
    runner.start()
    try:
        for _ in range(100):
            if counted:
                break
            await asyncio.sleep(0.005)
        assert counted == [("auto", "capped")]  # the second, while the first holds 1e-4
        held.release.set()
        await _settled(runner, records, 1)
        runner.offer(_job(FakeBackend("large", [Script("Paris", None)]), tight))
        await _settled(runner, records, 2)  # the first cost 1.4e-5: room again
    finally:
        await runner.aclose()
    assert [r.verdict for r in records] == ["agree", "agree"]


async def test_a_failed_reference_call_is_an_error_and_frees_its_hold() -> None:
    records: list[ShadowRecord] = []
    runner = ShadowRunner(records.append, lambda r, v: None)
    runner.start()
    try:
        spec = ShadowSpec(rate=1.0, usd_per_day=1.5e-4)
        broken = FakeBackend("large", [Script(error=BackendError("error", "upstream 500"))])
        runner.offer(_job(broken, spec))
        await _settled(runner, records, 1)
        runner.offer(_job(FakeBackend("large", [Script("Paris", None)]), spec))
        await _settled(runner, records, 2)  # the failed check's hold was given back
    finally:
        await runner.aclose()
    assert [r.verdict for r in records] == ["error", "agree"]
    assert records[0].error == "upstream 500" and records[0].cost_usd == 0


def test_sampling_follows_the_rate() -> None:
    draws = iter([0.04, 0.06, 0.5])
    runner = ShadowRunner(lambda r: None, lambda r, v: None, chance=lambda: next(draws))
    assert [runner.sampled(0.05) for _ in range(3)] == [True, False, False]
    assert not runner.sampled(0.0)


def _request(team: str, route: str) -> dict[str, Any]:
    return {
        "request_id": f"r-{team}-{route}",
        "ts": "2026-12-02T10:00:00.000Z",
        "team": team,
        "route": route,
        "status": "ok",
        "attempts": [],
        "cost_usd": 0.0,
        "counterfactual_cost_usd": 0.0,
        "final_tier": "small",
        "latency_ms": 1.0,
    }


def _check(verdict: str, team: str = "a", target: float | None = 0.9) -> dict[str, Any]:
    return {
        "kind": "shadow",
        "request_id": "s",
        "ts": "2026-12-02T10:00:01.000Z",
        "team": team,
        "route": "auto",
        "local_tier": "small",
        "verdict": verdict,
        "cost_usd": 0.001,
        "target_quality": target,
    }


def test_the_audit_estimates_local_quality_and_flags_a_route_below_its_target() -> None:
    aggregator = Aggregator(["team", "route"])
    aggregator.add(_request("a", "auto"))
    for verdict in ["agree"] * 8 + ["disagree"] * 2 + ["inconclusive", "error"]:
        aggregator.add(_check(verdict))
    for verdict in ["agree"] * 3:
        aggregator.add(_check(verdict, team="b"))
    for verdict in ["agree", "disagree", "disagree"]:  # rejected answers: not served
        aggregator.add({**_check(verdict), "local_outcome": "escalated"})
    a, b = (figures(aggregator.groups[(team, "auto")]) for team in ("a", "b"))
    assert a["requests"] == 1 and b["requests"] == 0  # checks are not requests
    quality = a["local_quality"]
    assert (quality["checks"], quality["agree"], quality["estimate"]) == (10, 8, 0.8)
    assert quality["inconclusive"] == 1 and quality["errors"] == 1
    assert quality["interval_95"] == [0.4902, 0.9433]
    assert quality["below_target"] is True and quality["cost_usd"] == pytest.approx(0.015)
    assert b["local_quality"]["below_target"] is False
    assert quality["escalated"]["checks"] == 3 and quality["escalated"]["agree"] == 1
    assert quality["skipped"] is None and b["local_quality"]["escalated"] is None
    assert cell(quality) == "80% (49-94%) n=10 below target 90%"
    assert figures(aggregator.total)["local_quality"]["checks"] == 13  # accepted only
    assert figures(Aggregator(["team"]).total)["local_quality"] is None


@pytest.mark.parametrize(
    ("said", "verdict"),
    [
        ("Yes.", "agree"),
        ("no", "disagree"),
        ("**No**, it differs", "disagree"),
        ("Maybe", "inconclusive"),
        ("", "inconclusive"),
    ],
)
def test_the_llm_judges_word_is_read_strictly(said: str, verdict: str) -> None:
    assert read_judgement(said) == verdict


async def test_an_llm_judge_is_asked_with_the_versioned_prompt_and_paid_for() -> None:
    records: list[ShadowRecord] = []
    runner = ShadowRunner(records.append, lambda r, v: None)
    runner.start()
    spec = ShadowSpec(rate=1.0, usd_per_day=1.0, judge="llm", judge_tier="judge")
    judge = FakeBackend("judge", [Script("Yes.", None), Script("No", None)])
    try:
        for _ in range(2):
            job = _job(FakeBackend("large", [Script("It is Paris.", None)]), spec)
            job.judge, job.judge_price = judge, PriceSpec(input_per_1m=1.0, output_per_1m=1.0)
            runner.offer(job)
        await _settled(runner, records, 2)
    finally:
        await runner.aclose()
    assert [r.verdict for r in records] == ["agree", "disagree"]
    assert all(r.judge == "llm:llm-judge-v1" for r in records)
    assert judge.calls == 2
    plain: list[ShadowRecord] = []
    without = ShadowRunner(plain.append, lambda r, v: None)
    without.start()
    try:
        without.offer(_job(FakeBackend("large", [Script("It is Paris.", None)]), _SPEC))
        await _settled(without, plain, 1)
    finally:
        await without.aclose()
    assert records[0].cost_usd > plain[0].cost_usd > 0  # the judge's call is paid for too


_SPEC = ShadowSpec(rate=1.0, usd_per_day=1.0)


def test_an_llm_judge_needs_its_tier() -> None:
    with pytest.raises(ValueError, match="judge llm needs judge_tier"):
        ShadowSpec(rate=1.0, usd_per_day=1.0, judge="llm")
    with pytest.raises(ValueError, match="judge llm needs judge_tier"):
        ShadowSpec(rate=1.0, usd_per_day=1.0, judge_tier="judge")
    prompt = llm_judge_prompt("Q?", "Paris", "Lyon")
    assert "Question:\nQ?" in prompt and "Reference answer:\nParis" in prompt
    assert prompt.endswith("Reply with one word: yes or no.")
