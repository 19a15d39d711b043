"""A route's `fallback_on`: which failure classes send a request on to the next tier. By
default the provider's trouble and a prompt too long for one tier do; a content-policy refusal
and a request the provider refused are the client's answer, with the provider's words."""

from __future__ import annotations

import pytest

from router.backends.base import (
    BackendError,
    FailureClass,
    GenerationParams,
    Message,
    Prompt,
    failure_class,
)
from router.cascade import Cascade
from router.failures import failure_error
from router.outcomes import CascadeFailure, Outcome
from router.policy import parse_policy
from router.request import ClientRequest
from router.routing import Facts, decide
from tests.support.fakes import FakeBackend, Script


def _error(status: int | None, message: str = "nope", code: str | None = None) -> BackendError:
    error = BackendError("error", message, status)
    error.code = code
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (BackendError("timeout", "no first token in 15 s"), "timeout"),
        (BackendError("rejected", "cannot fit"), "context_length_exceeded"),
        (BackendError("shed", "queue full"), "unavailable"),
        (BackendError("unavailable", "unreachable"), "unavailable"),
        (_error(500), "unavailable"),
        (_error(503), "unavailable"),
        (_error(None, "reset before the first byte"), "unavailable"),
        (_error(401, "invalid api key"), "unavailable"),  # this tier's key, not the request
        (_error(404, "model not found"), "unavailable"),
        (_error(429), "rate_limited"),
        (_error(400, "filtered", "content_filter"), "content_filter"),
        (_error(400, "the content management policy said no"), "content_filter"),
        (_error(400, "too long", "context_length_exceeded"), "context_length_exceeded"),
        (
            _error(400, "This model's maximum context length is 4096 tokens"),
            "context_length_exceeded",
        ),
        (_error(400, "unknown parameter 'foo'"), "invalid_request"),
        (_error(422, "bad value"), "invalid_request"),
    ],
)
def test_each_failure_has_its_class(error: BackendError, expected: FailureClass) -> None:
    assert failure_class(error) == expected


def _run(fallback_on: str, error: BackendError) -> tuple[Cascade, FakeBackend, object]:
    loaded = parse_policy(
        f"""
tiers:
  first: {{type: openai, model: f}}
  spare: {{type: openai, model: s}}
routes:
  auto:
    cascade: [{{tier: first}}]
    fallbacks: {{first: [spare]}}
    {fallback_on}
""".encode(),
        env={},
    )
    spare = FakeBackend("spare", [Script("spare answer", None)])
    backends = {"first": FakeBackend("first", [Script(error=error)]), "spare": spare}
    return Cascade(loaded.policy, backends), spare, decide(loaded.policy, {}, Facts(model="auto"))


def _request() -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "hi"),))
    return ClientRequest("auto", prompt, GenerationParams(max_tokens=10), False, False)


async def _outcome(fallback_on: str, error: BackendError) -> tuple[Outcome | CascadeFailure, int]:
    cascade, spare, decision = _run(fallback_on, error)
    try:
        return await cascade.run(decision, _request()), spare.calls  # type: ignore[arg-type]
    except CascadeFailure as failure:
        return failure, spare.calls


@pytest.mark.parametrize(
    "error",
    [
        _error(503),
        _error(429),
        BackendError("timeout", "stalled"),
        _error(400, "x", "context_length_exceeded"),
    ],
    ids=["unavailable", "rate_limited", "timeout", "context_length_exceeded"],
)
async def test_by_default_the_providers_trouble_falls_over(error: BackendError) -> None:
    outcome, spare_calls = await _outcome("", error)
    assert isinstance(outcome, Outcome) and (outcome.tier, spare_calls) == ("spare", 1)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (_error(400, "filtered by policy", "content_filter"), 400, "content_filter"),
        (_error(400, "unknown parameter 'foo'", "unknown_parameter"), 400, "upstream_rejected"),
    ],
    ids=["content_filter", "invalid_request"],
)
async def test_by_default_a_refused_request_is_the_clients_answer(
    error: BackendError, status: int, code: str
) -> None:
    failure, spare_calls = await _outcome("", error)
    assert isinstance(failure, CascadeFailure) and spare_calls == 0
    client_error = failure_error(failure, prompt_param="messages", route="auto")
    assert (client_error.status, client_error.code) == (status, code)
    assert error.message in client_error.message


async def test_a_route_can_fall_over_on_a_refusal_when_it_says_so() -> None:
    refusal = _error(400, "filtered", "content_filter")
    outcome, _ = await _outcome("fallback_on: [unavailable, content_filter]", refusal)
    assert isinstance(outcome, Outcome) and outcome.tier == "spare"
    outcome, _ = await _outcome("route_around_refusals: true", refusal)  # the shorthand
    assert isinstance(outcome, Outcome) and outcome.tier == "spare"


async def test_a_route_can_narrow_what_it_falls_over_on() -> None:
    failure, spare_calls = await _outcome("fallback_on: [timeout]", _error(429))
    assert isinstance(failure, CascadeFailure) and spare_calls == 0
    client_error = failure_error(failure, prompt_param="messages", route="auto")
    assert client_error.status == 429


async def test_a_providers_context_length_400_on_the_last_tier_is_context_length_exceeded() -> None:
    failure, _ = await _outcome("fallback_on: [timeout]", _error(400, "maximum context length"))
    assert isinstance(failure, CascadeFailure)
    client_error = failure_error(failure, prompt_param="messages", route="auto")
    assert (client_error.status, client_error.code) == (400, "context_length_exceeded")


def test_an_unknown_class_is_refused_by_validation() -> None:
    with pytest.raises(Exception, match="fallback_on"):
        _run("fallback_on: [outage]", _error(500))
