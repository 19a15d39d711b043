"""A tier's declared `context_window`: a request that cannot fit skips it before it is called,
for the next tier that can; none that can is the client's 400 context_length_exceeded."""

from __future__ import annotations

import pytest

from router.backends.base import GenerationParams, Message, Prompt
from router.cascade import Cascade
from router.failures import failure_error
from router.outcomes import CascadeFailure
from router.policy import parse_policy
from router.request import ClientRequest
from router.routing import Facts, decide
from tests.support.fakes import FakeBackend, Script


def _run(windows: tuple[int, int | None]) -> tuple[Cascade, object]:
    small, large = windows
    large_window = f", context_window: {large}" if large else ""
    loaded = parse_policy(
        f"""
tiers:
  small: {{type: openai, model: s, context_window: {small}}}
  large: {{type: openai, model: l{large_window}}}
routes:
  auto: {{cascade: [{{tier: small}}], fallbacks: {{small: [large]}}}}
""".encode(),
        env={},
    )
    backends = {
        "small": FakeBackend("small", [Script("small answer", None)]),
        "large": FakeBackend("large", [Script("large answer", None)]),
    }
    return Cascade(loaded.policy, backends), decide(loaded.policy, {}, Facts(model="auto"))


def _request(prompt_tokens: int | None = None) -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "word " * 200),))  # ~1,000 bytes: ~260 tokens
    return ClientRequest(
        "auto",
        prompt,
        GenerationParams(max_tokens=100),
        False,
        False,
        prompt_tokens=prompt_tokens,
    )


async def test_a_tier_too_small_is_skipped_for_one_that_fits() -> None:
    cascade, decision = _run((200, None))
    outcome = await cascade.run(decision, _request())  # type: ignore[arg-type]
    skipped, answered = outcome.attempts
    assert (skipped.tier, skipped.outcome) == ("small", "skipped")
    assert skipped.error is not None and skipped.error.startswith("skipped: context_window (")
    assert (answered.tier, answered.outcome) == ("large", "accepted")


async def test_the_counted_prompt_is_used_when_there_is_one() -> None:
    cascade, decision = _run((200, None))
    outcome = await cascade.run(decision, _request(prompt_tokens=90))  # type: ignore[arg-type]
    assert [a.tier for a in outcome.attempts] == ["small"]  # 90 + 100 fits 200


async def test_when_no_tier_can_fit_the_client_is_told() -> None:
    cascade, decision = _run((200, 300))
    with pytest.raises(CascadeFailure) as failure:
        await cascade.run(decision, _request())  # type: ignore[arg-type]
    error = failure_error(failure.value, prompt_param="messages", route="auto")
    assert (error.status, error.code) == (400, "context_length_exceeded")
