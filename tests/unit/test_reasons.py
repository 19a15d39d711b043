"""`x-cascade-reason`: why an answer went where it did, the same on whole and streamed
answers, and on errors."""

from __future__ import annotations

import pytest

from router.api.reasons import reason
from router.backends.base import BackendError
from router.records import Attempt
from router.routing import Decision, Plan, Step, Verdict
from tests.support.app import CHAT, Serve, record_of, sse
from tests.support.fakes import UNSURE, FakeBackend, Script


@pytest.mark.parametrize("stream", [False, True])
async def test_an_escalation_says_why_on_both_paths(serve: Serve, stream: bool) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)], local=True)
    large = FakeBackend("large", [Script("four", None)])
    client, ledger = await serve(small=small, large=large)
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    if stream:
        await sse(response)
    said = response.headers["x-cascade-reason"]
    # the last step is always kept: a streamed request gets it live
    assert said == f"low_confidence:small 0.08<0.5; {'live' if stream else 'accepted'}:large"
    await client.close()
    record = record_of(ledger, response.headers["x-request-id"])
    assert record["reason"] == "low_confidence:small 0.08<0.5; accepted:large"  # once it ended


async def test_a_failure_says_what_each_tier_did(serve: Serve) -> None:
    small = FakeBackend("small", [Script("maybe", UNSURE)], local=True)
    large = FakeBackend("large", [Script(error=BackendError("unavailable", "refused"))])
    client, _ = await serve(small=small, large=large)
    body = {**CHAT, "model": "large"}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 503
    assert response.headers["x-cascade-reason"] == "failed:large:error"


def _attempt(tier: str, outcome: str, **extra: object) -> Attempt:
    return Attempt(tier, "openai", "m", "2026-12-05T10:00:00.000Z", 1.0, outcome=outcome, **extra)  # type: ignore[arg-type]


def test_rules_budgets_skips_and_features_are_named() -> None:
    plan = Plan("auto", (Step("small", None), Step("large", None)), "large")
    verdict = Verdict("prerouter", "prerouter", "v1", 0.08, 0.13)
    decision = Decision("auto", plan, rule="critical", verdicts=(verdict,))
    attempts = [
        _attempt("small", "skipped", error="skipped: image, tools"),
        _attempt("large", "accepted"),
    ]
    said = reason(decision, attempts, budget="degraded", budget_share=0.85)
    assert said == (
        "rule:critical->auto; budget_degraded 85%; prerouter_skip:small 0.08<0.13; "
        "skipped:small:image,tools; accepted:large"
    )
    assert reason(decision, [], cache_hit=True).endswith("; cache_hit")
    assert reason(Decision("x", plan), [], live_tier="large") == "live:large"


def test_a_degraded_answer_says_why_it_wanted_better_and_ends_with_what_was_served() -> None:
    plan = Plan("auto", (Step("small", None), Step("large", None)), "large")
    unsure = {"method": "learned", "value": 0.21, "threshold": 0.3}
    attempts = [
        _attempt("small", "degraded", confidence=unsure),
        _attempt("large", "error", error="not configured"),
    ]
    said = reason(Decision("auto", plan), attempts)
    assert said == "low_confidence:small 0.21<0.3; tier_unconfigured:large; degraded:small"
    verdict = Verdict("prerouter", "prerouter", "v1", 0.04, 0.13)
    skipped = Decision("auto", plan, verdicts=(verdict,))
    late = [attempts[1], _attempt("small", "degraded")]  # not judged: nothing to say of it
    assert reason(skipped, late) == (
        "prerouter_skip:small 0.04<0.13; tier_unconfigured:large; degraded:small"
    )
