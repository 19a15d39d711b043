"""The cascade executor's paths with in-memory backends: what it serves, what it reports."""

from __future__ import annotations

from typing import Any

import pytest

from router.backends.base import (
    Backend,
    BackendError,
    GenerationParams,
    Message,
    Prompt,
)
from router.cascade import Cascade
from router.outcomes import CascadeFailure, Crashed, Outcome
from router.output_format import OutputFormat
from router.policy import parse_policy
from router.request import ClientRequest
from router.routing import Decision, Facts, Scorer, decide
from tests.support.fakes import UNSURE, FakeBackend, FixedRouter, Script

LOADED = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp}
  spare: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
  guarded:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: spare, acceptance: {threshold: 0.5}}
      - {tier: large}
    fallbacks: {small: [spare]}
  live:
    stream: live
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
  skipping:
    classifier: {model: prerouter, threshold: 0.5}
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
""",
    env={},
)
POLICY = LOADED.policy


def request(*, stream: bool = False) -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "What is 2 + 2?"),))
    return ClientRequest("auto", prompt, GenerationParams(max_tokens=16), stream, False)


def decision(route: str = "auto", prerouter: float = 0.9) -> Decision:
    routers: dict[str, Scorer] = {"prerouter": FixedRouter("prerouter", prerouter)}
    found = decide(POLICY, routers, Facts(model=route))
    assert found is not None
    return found


def cascade(**backends: FakeBackend | None) -> Cascade:
    tiers: dict[str, Backend | None] = {name: None for name in POLICY.tiers}
    tiers.update(backends)
    return Cascade(POLICY, tiers, LOADED.acceptance_models)


def outcomes(outcome: Outcome | CascadeFailure) -> list[tuple[str, str]]:
    attempts = outcome.all_attempts() if isinstance(outcome, Outcome) else outcome.attempts
    return [(a.tier, a.outcome) for a in attempts]


async def drain(outcome: Outcome) -> str:
    assert outcome.live is not None
    text = "".join([event.text async for event in outcome.live.events])
    await outcome.live.aclose()
    return text


UNSURE_SMALL = FakeBackend("small", [Script("maybe five", UNSURE)])


async def test_a_confident_first_step_is_served() -> None:
    small, large = FakeBackend("small"), FakeBackend("large")
    outcome = await cascade(small=small, large=large).run(decision(), request())
    assert (outcome.tier, outcome.escalations, outcome.degraded) == ("small", 0, False)
    assert outcomes(outcome) == [("small", "accepted")]
    assert outcome.attempts[0].local and outcome.attempts[0].confidence is not None
    assert large.calls == 0


async def test_an_unsure_answer_escalates() -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)])
    large = FakeBackend("large", [Script("four", None)])
    outcome = await cascade(small=small, large=large).run(decision(), request())
    assert (outcome.tier, outcome.escalations, outcome.degraded) == ("large", 1, False)
    assert outcomes(outcome) == [("small", "escalated"), ("large", "accepted")]
    assert outcome.completion is not None and outcome.completion.text == "four"
    confidence: Any = outcome.attempts[0].confidence
    assert confidence["value"] < confidence["threshold"] == 0.5
    assert outcome.attempts[1].confidence is None  # the upstream sent no logprobs


async def test_a_streamed_escalation_counts_the_escalation() -> None:
    """The bug this executor was rewritten for: streamed, the escalated answer said 0."""
    small = FakeBackend("small", [Script("maybe five", UNSURE)])
    large = FakeBackend("large", [Script("the answer is four", None)])
    outcome = await cascade(small=small, large=large).run(decision(), request(stream=True))
    assert outcome.live is not None and outcome.completion is None
    assert (outcome.tier, outcome.escalations) == ("large", 1)  # known before streaming
    assert await drain(outcome) == "the answer is four"
    assert outcome.escalations == 1  # and the same once it ended
    assert outcomes(outcome) == [("small", "escalated"), ("large", "accepted")]


async def test_a_verified_step_is_streamed_only_after_it_was_accepted() -> None:
    small, large = FakeBackend("small", [Script("four")]), FakeBackend("large")
    outcome = await cascade(small=small, large=large).run(decision(), request(stream=True))
    assert outcome.live is None and outcome.completion is not None  # generated in full
    assert outcomes(outcome) == [("small", "accepted")]


async def test_a_live_route_streams_its_first_step_and_keeps_it() -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)])
    large = FakeBackend("large")
    outcome = await cascade(small=small, large=large).run(decision("live"), request(stream=True))
    assert outcome.live is not None and outcome.escalations == 0
    assert await drain(outcome) == "maybe five"
    assert outcomes(outcome) == [("small", "accepted")] and large.calls == 0


async def test_a_stream_that_breaks_records_an_error_attempt() -> None:
    large = FakeBackend("large", [Script("one two three", None, break_after=2)])
    outcome = await cascade(small=UNSURE_SMALL, large=large).run(decision(), request(stream=True))
    with pytest.raises(BackendError):
        await drain(outcome)
    assert outcome.live is not None
    await outcome.live.aclose()
    assert outcomes(outcome) == [("small", "escalated"), ("large", "error")]
    assert large.streams_closed == 1


async def test_a_stream_never_read_still_closes_its_tier_and_is_recorded() -> None:
    large = FakeBackend("large", [Script("one two", None)])
    outcome = await cascade(small=UNSURE_SMALL, large=large).run(decision(), request(stream=True))
    assert outcome.live is not None
    await outcome.live.aclose()  # e.g. the client left before the response began
    assert large.streams_closed == 1
    assert outcomes(outcome)[-1] == ("large", "client_gone")


async def test_a_failed_tier_falls_back_within_its_step() -> None:
    small = FakeBackend("small", [Script(error=BackendError("shed", "saturated"))])
    spare = FakeBackend("spare", [Script("four")])
    outcome = await cascade(small=small, spare=spare, large=FakeBackend("large")).run(
        decision("guarded"), request()
    )
    assert (outcome.tier, outcome.escalations, outcome.fallbacks) == ("spare", 0, 1)
    # the fallback answered for the step; the step's next tier (also spare) is not retried
    assert outcomes(outcome) == [("small", "shed"), ("spare", "accepted")]


async def test_every_answer_rejected_and_the_last_tier_down_serves_the_best_degraded() -> None:
    small = FakeBackend("small", [Script("five", [-0.9, -0.9])])
    spare = FakeBackend("spare", [Script("six", UNSURE)])
    outcome = await cascade(small=small, spare=spare).run(decision("guarded"), request())
    # small's answer and spare's were rejected (2 escalations); large failed (a fallback)
    assert (outcome.tier, outcome.degraded, outcome.escalations) == ("small", True, 2)
    assert outcome.fallbacks == 1
    assert outcomes(outcome) == [
        ("small", "degraded"),  # the most confident rejected answer is the one served
        ("spare", "escalated"),
        ("large", "error"),  # not configured
    ]
    assert outcome.completion is not None and outcome.completion.text == "five"


async def test_a_skipped_first_step_never_runs_when_a_later_step_answers() -> None:
    small, large = FakeBackend("small"), FakeBackend("large", [Script("four", None)])
    chosen = decision("skipping", prerouter=0.1)
    assert chosen.skipped == 1
    outcome = await cascade(small=small, large=large).run(chosen, request())
    assert outcomes(outcome) == [("large", "accepted")] and small.calls == 0
    assert outcome.escalations == 0


async def test_a_skipped_first_step_rescues_a_failed_route() -> None:
    small = FakeBackend("small", [Script("four", UNSURE)])
    large = FakeBackend("large", [Script(error=BackendError("timeout", "slow"))])
    chosen = decision("skipping", prerouter=0.1)
    outcome = await cascade(small=small, large=large).run(chosen, request())
    # the rescue is judged by its acceptance: rejected, it is still the best there is
    assert outcomes(outcome) == [("large", "timeout"), ("small", "degraded")]
    assert (outcome.tier, outcome.degraded, outcome.escalations) == ("small", True, 1)


@pytest.mark.parametrize(
    ("errors", "reason"),
    [
        (["shed", "shed"], "saturated"),
        (["shed", "timeout"], "timeout"),
        (["error", "unavailable"], "unavailable"),
        (["unavailable", "shed"], "error"),
    ],
)
async def test_no_answer_is_a_typed_failure(errors: list[Any], reason: str) -> None:
    small = FakeBackend("small", [Script(error=BackendError(errors[0], "first"))])
    large = FakeBackend("large", [Script(error=BackendError(errors[1], "second"))])
    with pytest.raises(CascadeFailure) as failure:
        await cascade(small=small, large=large).run(decision(), request())
    assert failure.value.reason == reason and not failure.value.passthrough
    assert [a.outcome for a in failure.value.attempts] == [
        e if e in ("shed", "timeout") else "error" for e in errors
    ]


async def test_a_tier_asked_for_by_name_passes_its_upstream_status_through() -> None:
    large = FakeBackend("large", [Script(error=BackendError("error", "bad key", 401))])
    with pytest.raises(CascadeFailure) as failure:
        await cascade(large=large).run(decision("large"), request())
    assert failure.value.passthrough and failure.value.upstream_status == 401


class Buggy(FakeBackend):
    async def complete(self, prompt: Prompt, params: GenerationParams) -> Any:
        raise ValueError("a bug, not a tier failure")


async def test_a_bug_inside_still_reports_the_attempts_made() -> None:
    small = FakeBackend("small", [Script("maybe", UNSURE)])
    with pytest.raises(Crashed) as crashed:
        await cascade(small=small, large=Buggy("large")).run(decision(), request())
    assert [(a.tier, a.outcome) for a in crashed.value.attempts] == [("small", "escalated")]
    assert isinstance(crashed.value.__cause__, ValueError)


def tools_request(*, stream: bool = False) -> ClientRequest:
    plain = request(stream=stream)
    return ClientRequest("auto", plain.prompt, plain.params, stream, False, frozenset({"tools"}))


async def test_a_tier_that_cannot_serve_a_feature_is_skipped_with_the_reason() -> None:
    small = FakeBackend("small")  # a local model: text only
    large = FakeBackend("large", [Script("calling f", None)])  # an openai tier: serves tools
    outcome = await cascade(small=small, large=large).run(decision(), tools_request())
    assert outcomes(outcome) == [("small", "skipped"), ("large", "accepted")]
    assert outcome.attempts[0].error == "skipped: tools" and small.calls == 0
    assert (outcome.escalations, outcome.fallbacks) == (0, 0)  # small was never asked


async def test_no_tier_serving_a_feature_is_a_typed_failure() -> None:
    with pytest.raises(CascadeFailure) as failure:
        await cascade(small=FakeBackend("small")).run(decision("large"), tools_request())
    assert failure.value.reason == "unavailable"  # large is not configured at all
    small = FakeBackend("small")
    with pytest.raises(CascadeFailure) as failure:
        await cascade(small=small).run(decision("small"), tools_request())
    assert failure.value.reason == "unsupported"
    assert [(a.tier, a.outcome) for a in failure.value.attempts] == [("small", "skipped")]


async def test_a_tier_serves_the_features_its_policy_declares() -> None:
    loaded = parse_policy(
        b"""
tiers:
  small: {type: llama_cpp, features: [tools]}
  large: {type: openai, model: m, features: []}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
""",
        env={},
    )
    small = FakeBackend("small", [Script("call", UNSURE)])
    large = FakeBackend("large")
    chosen = decide(loaded.policy, {}, Facts(model="auto"))
    assert chosen is not None
    run = Cascade(loaded.policy, {"small": small, "large": large})
    outcome = await run.run(chosen, tools_request())
    # small says it serves tools (a local model with a tool grammar, say); large says nothing
    assert outcomes(outcome) == [("small", "degraded"), ("large", "skipped")]


def structured(*, stream: bool = False) -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "A person?"),))
    schema = {"type": "object", "properties": {"age": {"type": "integer", "maximum": 30}}}
    params = GenerationParams(max_tokens=16, output=OutputFormat.of("json_schema", schema))
    return ClientRequest("auto", prompt, params, stream, False, frozenset({"json_schema"}))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_confident_answer_that_breaks_the_schema_is_never_accepted(stream: bool) -> None:
    small = FakeBackend("small", [Script('{"age": 31}')])  # confident, but over the maximum
    large = FakeBackend("large", [Script('{"age": 30}', None)])
    outcome = await cascade(small=small, large=large).run(decision(), structured(stream=stream))
    if stream:
        assert await drain(outcome) == '{"age": 30}'  # the last step streams live
    assert outcomes(outcome) == [("small", "escalated"), ("large", "accepted")]
    small_attempt = outcome.attempts[0]
    assert small_attempt.output_check == "invalid: age: 31 is greater than the maximum of 30"
    confidence: Any = small_attempt.confidence
    assert confidence["value"] > confidence["threshold"]  # confidence alone would have kept it
    if not stream:
        assert outcome.attempts[1].output_check == "valid"


async def test_an_answer_that_validates_is_judged_by_confidence_as_before() -> None:
    small = FakeBackend("small", [Script('{"age": 30}')])
    outcome = await cascade(small=small, large=FakeBackend("large")).run(decision(), structured())
    assert outcomes(outcome) == [("small", "accepted")]
    assert outcome.attempts[0].output_check == "valid"
    unsure = FakeBackend("small", [Script('{"age": 30}', UNSURE)])
    outcome = await cascade(small=unsure, large=FakeBackend("large")).run(decision(), structured())
    assert outcomes(outcome) == [("small", "escalated"), ("large", "accepted")]


async def test_when_every_answer_fails_a_valid_one_is_preferred_over_a_confident_invalid() -> None:
    small = FakeBackend("small", [Script("not json at all")])
    spare = FakeBackend("spare", [Script('{"age": 3}', UNSURE)])
    large = FakeBackend("large", [Script(error=BackendError("error", "down"))])
    outcome = await cascade(small=small, spare=spare, large=large).run(
        decision("guarded"), structured()
    )
    assert outcome.degraded and outcome.tier == "spare"
    assert outcome.completion is not None and outcome.completion.text == '{"age": 3}'
