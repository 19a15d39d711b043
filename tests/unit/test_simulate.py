"""`cascade policy simulate`: replayed traffic predicts what the candidate actually does.

The end-to-end check serves the same prompts through the in-process server twice, under
policy A and then under policy B (a higher threshold, a rule that moves tagged requests to
another route, a budget that degrades), with backends whose answers depend on the prompt
alone; the simulation of B from A's ledger must match B's own ledger."""

from __future__ import annotations

import asyncio
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.backends.base import Completion, GenerationParams, Prompt
from router.ledger import open_reader, parse_ledger_url
from router.policy import LoadedPolicy, parse_policy
from router.simulate import Scope, simulate
from router.simulate.evidence import budget_of, gather, team_of
from router.simulate.html import render_html
from router.simulate.render import render_markdown, render_table
from router.simulate.replay import NotReplayable, Replayer, question
from router.simulate.run import _parts
from router.simulate.tokens import TokenModel
from tests.support.app import Serve
from tests.support.cascade import read_ledger
from tests.support.fakes import FakeBackend

A = """
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m, price: {input_per_1m: 1000.0, output_per_1m: 2000.0}}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
  direct:
    cascade: [{tier: large}]
"""
# A with a higher threshold, a rule that moves tagged requests, and a budget that degrades
B = A.replace("threshold: 0.5", "threshold: 0.7") + (
    "rules:\n"
    "  - {name: beta-direct, match: {tags: [beta]}, route: direct}\n"
    "teams:\n"
    "  default:\n"
    "    limits: {usd_per_day: 6.0}\n"
    "    budget_routing: {degrade_at: 0.6}\n"
)


def _hash(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass
class ByPrompt(FakeBackend):
    """Answers that depend on the question alone: its confidence, and its length (the large
    tier writes about twice as much as the small one, so its tokens must be estimated)."""

    def __post_init__(self) -> None:
        super().__post_init__()

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        self.calls += 1
        h = _hash(prompt.question)
        words = 3 + h % 17
        if not self.local:
            words = 2 * words + 1 + h % 3
        confidence = 0.02 + 0.96 * ((h >> 8) % 1000) / 1000
        return Completion(
            text=" ".join(["w"] * words),
            finish_reason="stop",
            prompt_tokens=len(prompt.question.split()) + 4,
            completion_tokens=words,
            model=self.model,
            token_logprobs=[math.log(confidence)] * 3,
            ttft_ms=1.0,
            usage_source="counted" if self.local else "reported",
        )


async def _traffic(serve: Serve, policy: str, n: int) -> list[dict[str, Any]]:
    client, ledger = await serve(
        policy, small=ByPrompt("small", local=True), large=ByPrompt("large")
    )
    for i in range(n):
        headers = {"x-cascade-tags": "beta"} if i % 4 == 0 else {}
        body = {
            "model": "auto",
            "max_tokens": 60,
            "messages": [{"role": "user", "content": f"question number {i} about things"}],
        }
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status == 200, await response.text()
    await client.close()
    return read_ledger(ledger)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return f"jsonl:///{path}"


def _simulate(url: str, loaded: LoadedPolicy, **scope: Any) -> dict[str, Any]:
    target = parse_ledger_url(url)
    return simulate(lambda: open_reader(target), loaded, source=url, scope=Scope(**scope))


async def test_the_replay_of_a_ledger_predicts_what_the_candidate_does(
    serve: Serve, tmp_path: Path
) -> None:
    n = 160
    recorded = await _traffic(serve, A, n)
    version_a = recorded[0]["policy_version"]
    a = [r for r in recorded if r["policy_version"] == version_a]
    run_b = await _traffic(serve, B, n)
    b = [r for r in run_b if r["policy_version"] != version_a]
    assert len(a) == len(b) == n
    candidate = parse_policy(B.encode(), env={})

    # simulate() runs its own event loop (as the CLI does): here, beside the test's
    predicted = await asyncio.to_thread(_simulate, _jsonl(tmp_path / "a.jsonl", a), candidate)
    actual = await asyncio.to_thread(_simulate, _jsonl(tmp_path / "b.jsonl", b), candidate)

    assert predicted["not_replayed"]["requests"] == 0
    p, real = predicted["totals"]["predicted"], actual["totals"]["actual"]
    # the budget degraded part of the traffic, and the rule moved the tagged quarter
    assert p["budget"].get("degraded", 0) > 10
    assert {g["route"] for g in predicted["groups"] if g["predicted"]["requests"]} == {
        "auto",
        "direct",
    }
    assert p["requests"] == real["requests"] == n
    assert p["tiers"] == real["tiers"]
    assert p["local_share"] == real["local_share"]
    assert p["escalations"] == real["escalations"]
    assert p["statuses"] == real["statuses"]
    assert p["budget"] == real["budget"]
    # the large tier's tokens on requests it never saw are estimated: within 3%, and
    # within the interval the report states
    assert abs(p["cost_usd"] - real["cost_usd"]) <= 0.03 * real["cost_usd"]
    low, high = p["cost_interval_95"]
    assert low <= real["cost_usd"] <= high
    assert p["estimated_usd"] > 0
    # per team and route, too
    actual_groups = {(g["team"], g["route"]): g["actual"] for g in actual["groups"]}
    for group in predicted["groups"]:
        key = (group["team"], group["route"])
        if group["predicted"]["requests"]:
            assert group["predicted"]["local_share"] == actual_groups[key]["local_share"]
            assert group["predicted"]["escalations"] == actual_groups[key]["escalations"]

    # the recorded side of A's replay is A as it happened
    assert predicted["totals"]["actual"]["cost_usd"] == pytest.approx(
        sum(r["cost_usd"] for r in a), rel=1e-9
    )
    # every format renders it
    assert "beta" not in render_markdown(predicted)  # tags are not teams
    assert render_markdown(predicted).startswith("**cascade policy simulate**")
    assert "direct" in render_table(predicted)
    page = render_html(predicted)
    assert page.count('<svg class="chart"') == 3 and "<script>" in page


def _record(**fields: Any) -> dict[str, Any]:
    attempt = {
        "tier": "small",
        "backend": "llama_cpp",
        "model": "s",
        "started_at": "2026-12-01T10:00:00.000Z",
        "latency_ms": 50.0,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.0,
        "confidence": {"method": "mean_prob", "value": 0.8, "threshold": 0.5},
        "outcome": "accepted",
        "local": True,
    }
    record = {
        "request_id": "r1",
        "endpoint": "/v1/chat/completions",
        "policy_version": "a",
        "ts": "2026-12-01T10:00:00.000Z",
        "team": "default",
        "tags": [],
        "requested_model": "auto",
        "route": "auto",
        "attempts": [attempt],
        "final_tier": "small",
        "status": "ok",
        "latency_ms": 55.0,
        "cost_usd": 0.0,
    }
    record.update(fields)
    return record


async def _replay(policy: str, record: dict[str, Any], evidence: Any = None) -> Any:
    loaded = parse_policy(policy.encode(), env={})
    found = evidence or gather(iter([json.dumps(record).encode()]))
    return await Replayer(loaded, found).replay(record)


async def test_a_threshold_above_the_recorded_confidence_escalates_at_estimated_cost() -> None:
    record = _record()
    record["attempts"][0]["confidence"]["value"] = 0.6  # kept at 0.5, not at B's 0.7
    served = await _replay(B, record)
    assert served.final_tier == "large" and served.escalated and served.status == "ok"
    assert served.latency_ms is None  # the large tier never ran for it
    assert served.estimated_usd == served.cost_usd > 0


def _with_prerouter(threshold: float) -> str:
    """Policy A with the bundled pre-router on its `auto` route."""
    found = f"  auto:\n    classifier: {{model: prerouter, threshold: {threshold}}}\n    cascade:"
    return A.replace("  auto:\n    cascade:", found)


async def test_what_no_record_knows_is_not_replayed() -> None:
    # a method other than the one recorded
    other = A.replace("{threshold: 0.5}", "{method: min_prob, threshold: 0.5}")
    with pytest.raises(NotReplayable, match="no recorded min_prob confidence"):
        await _replay(other, _record())
    # a step to be judged on a tier that never answered
    first_large = A.replace(
        "- {tier: small, acceptance: {threshold: 0.5}}\n      - {tier: large}",
        "- {tier: large, acceptance: {threshold: 0.5}}\n      - {tier: small}",
    )
    with pytest.raises(NotReplayable, match="never answered it"):
        await _replay(first_large, _record())
    # a classifier the record has no score, features or prompt for
    with_router = _with_prerouter(0.3)
    with pytest.raises(NotReplayable, match="no recorded score, features or prompt"):
        await _replay(with_router, _record())


async def test_a_new_classifier_is_scored_on_the_shadow_checks_features() -> None:
    with_router = _with_prerouter(1.0)
    record = _record()
    check = {
        "kind": "shadow",
        "request_id": "s1",
        "shadow_of": "r1",
        "verdict": "agree",
        "local_outcome": "accepted",
        "features": {"prompt": [0.5] * 19},
    }
    evidence = gather(iter([json.dumps(record).encode(), json.dumps(check).encode()]))
    served = await _replay(with_router, record, evidence)
    # threshold 1.0: every score is below it, so the small step is skipped
    assert served.final_tier == "large" and not served.escalated
    # the same classifier (name@version) as recorded: the recorded score is used
    loaded = parse_policy(with_router.encode(), env={})
    router = loaded.routers["prerouter"]
    scored = _record(classifier={"name": router.name, "version": router.version, "score": 0.2})
    low = await Replayer(loaded, gather(iter([]))).replay(scored)
    assert low.final_tier == "large"


async def test_a_refused_or_abandoned_request_is_counted_not_guessed() -> None:
    with pytest.raises(NotReplayable, match="refused by the recorded policy"):
        await _replay(A, _record(attempts=[], status="refused"))
    gone = _record(status="client_gone")
    with pytest.raises(NotReplayable, match="client left"):
        await _replay(A, gone)
    hit = await _replay(A, _record(attempts=[], cache_hit=True, final_tier=None))
    assert hit.carried and hit.cost_usd == 0.0


def test_the_last_user_message_of_a_logged_prompt() -> None:
    assert question("system: be brief\nuser: first\nassistant: ok\nuser: two\nlines", False) == (
        "two\nlines"
    )
    assert question("user: cut sh", True) is None
    assert question(None, False) is None


def test_the_token_model_fits_a_line_and_the_interval_of_a_sum_of_estimates() -> None:
    model = TokenModel()
    for small in range(1, 101):  # a chat template's 30 tokens, another tokenizer's 0.8
        model.learn([("small", 30 + small, 2 * small + small % 3), ("large", small, small)])
    prompt, completion = model.estimate("large", "small", 50, 50)
    assert prompt == 80
    assert 100 <= completion <= 102
    line = model.line("large", "small", "completion")
    assert line.variance is not None and 0 < line.variance < 1
    # scatter grows with the count: one estimate's variance is about its own scatter (the
    # variance per token, times its 50); a thousand share the fit's uncertainty besides
    one, many = line.sum_variance(1, 50), line.sum_variance(1000, 50_000)
    assert one is not None and many is not None
    assert 50 * line.variance < one < 1.1 * 50 * line.variance
    assert many > 2 * 1000 * 50 * line.variance
    # no pairs: the counts as recorded, and no interval
    assert model.estimate("small", "other", 10, 50) == (10, 50)
    assert model.line("small", "other", "prompt").sum_variance(3, 30) is None


def test_a_budget_window_replays_in_one_process_and_the_rest_is_balanced() -> None:
    monday = json.dumps(_record(team="search", ts="2026-12-07T10:00:00.000Z")).encode()
    tuesday = json.dumps(_record(team="search", ts="2026-12-08T10:00:00.000Z")).encode()
    assert team_of(monday) == "search"
    periods = {"search": 10}  # a day's budget: each day's requests are one window
    assert budget_of(monday, periods) == "search\t2026-12-07"
    assert budget_of(monday, {"search": 7}) == "search\t2026-12"  # a month's
    evidence = gather(iter([]))
    evidence.requests = 1000
    evidence.budgets.update({"search\t2026-12-07": 500, "search\t2026-12-08": 100})
    parts = _parts(evidence, 2, periods)
    assert [p.takes(0, monday) for p in parts] == [True, False]
    assert [p.takes(5, tuesday) for p in parts] == [False, True]
    # 500 and 100 held: the other 400 go to the second part, which ends with 500 too
    other = json.dumps(_record(team="growth")).encode()
    taken = [sum(p.takes(i, other) for i in range(1000)) for p in parts]
    assert taken == [0, 1000]
    evidence.budgets["search\t2026-12-07"] = 200  # 200 + 3/7 of the rest, 100 + 4/7 of it
    taken = [sum(p.takes(i, other) for i in range(1000)) for p in _parts(evidence, 2, periods)]
    assert taken == [429, 571]
    # a window the sample missed is dealt by its name, to one part
    wednesday = json.dumps(_record(team="search", ts="2026-12-09T10:00:00.000Z")).encode()
    assert sum(p.takes(3, wednesday) for p in parts) == 1


def test_several_processes_give_the_report_one_gives(tmp_path: Path) -> None:
    records = []
    for i in range(400):
        value = (i * 37 % 100) / 100
        attempts = [
            {
                **_record()["attempts"][0],
                "confidence": {"method": "mean_prob", "value": value, "threshold": 0.5},
                "outcome": "accepted" if value >= 0.5 else "escalated",
            }
        ]
        if value < 0.5:
            attempts.append(
                {**attempts[0], "tier": "large", "local": False, "completion_tokens": 11}
            )
        team = ("search", "growth", "default")[i % 3]
        records.append(_record(request_id=f"r{i}", team=team, attempts=attempts))
    url = _jsonl(tmp_path / "l.jsonl", records)
    loaded = parse_policy(
        B.replace("  default:\n", "  search:\n").encode(), env={}
    )  # a limited team
    target = parse_ledger_url(url)
    one = simulate(lambda: open_reader(target), loaded, source=url, workers=1)
    two = simulate(lambda: open_reader(target), loaded, source=url, workers=2)
    assert one["totals"] == two["totals"]
    assert one["groups"] == two["groups"]
