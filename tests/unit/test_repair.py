"""Stream repair in the executor (router/repair.py) over in-memory backends: a live stream
that breaks mid-answer is continued on the step's fallback, by prefill or by regenerating,
or, when that cannot be proven right, ends in the original error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router.backends.base import BackendError, GenerationParams, Message, Prompt, StreamEvent
from router.cascade import Cascade
from router.policy import parse_policy
from router.request import ClientRequest
from router.routing import Facts, decide
from tests.support.fakes import FakeBackend, Script

ANSWER = "the quick brown fox jumps over the lazy dog"


def _cascade(continuation: str, **backends: FakeBackend) -> tuple[Cascade, Any]:
    loaded = parse_policy(
        f"""
tiers:
  primary: {{type: openai, model: p}}
  spare: {{type: openai, model: s, continuation: {continuation}}}
routes:
  live: {{cascade: [{{tier: primary}}], fallbacks: {{primary: [spare]}}}}
""".encode(),
        env={},
    )
    decision = decide(loaded.policy, {}, Facts(model="live"))
    return Cascade(loaded.policy, dict(backends)), decision


def _request(temperature: float | None = None) -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "a pangram?"),))
    params = GenerationParams(max_tokens=32, temperature=temperature)
    return ClientRequest("live", prompt, params, True, False)


async def _read(cascade: Cascade, decision: Any, request: ClientRequest) -> tuple[str, Any]:
    outcome = await cascade.run(decision, request)
    assert outcome.live is not None
    text = ""
    try:
        async for event in outcome.live.events:
            text += event.text
    except BackendError as exc:
        text += f"<error: {exc.message}>"
    await outcome.live.aclose()
    return text, outcome


class _Prefilled(FakeBackend):
    """A tier that continues the assistant message it is given."""

    async def stream(self, prompt: Prompt, params: GenerationParams) -> Any:
        self.calls += 1
        assert prompt.messages[-1].role == "assistant"
        rest = ANSWER[len(prompt.messages[-1].content) :]
        yield StreamEvent(text=rest)
        yield StreamEvent(finish_reason="stop", prompt_tokens=9, completion_tokens=5, model="s")


async def test_a_regenerated_answer_is_spliced_after_what_was_sent() -> None:
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    spare = FakeBackend("spare", [Script(ANSWER, None)])
    cascade, decision = _cascade("regenerate", primary=primary, spare=spare)
    text, outcome = await _read(cascade, decision, _request())
    assert text == ANSWER
    broken, repair = outcome.all_attempts()
    assert (broken.outcome, repair.outcome, repair.tier) == ("error", "accepted", "spare")
    assert repair.repair == {"method": "regenerate", "after_chars": 15, "of": "primary"}
    assert outcome.served_by == ("spare", "spare-model")


async def test_a_prefill_tier_continues_the_message() -> None:
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    cascade, decision = _cascade("prefill", primary=primary, spare=_Prefilled("spare"))
    text, outcome = await _read(cascade, decision, _request())
    assert text == ANSWER
    assert outcome.all_attempts()[-1].repair["method"] == "prefill"


@pytest.mark.parametrize(
    ("spare_answer", "temperature"),
    [("the quick red fox", None), (ANSWER, 0.9)],
    ids=["departs from what was sent", "a sampled answer"],
)
async def test_what_cannot_be_proven_ends_in_the_original_error(
    spare_answer: str, temperature: float | None
) -> None:
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    spare = FakeBackend("spare", [Script(spare_answer, None)])
    cascade, decision = _cascade("regenerate", primary=primary, spare=spare)
    text, outcome = await _read(cascade, decision, _request(temperature))
    assert text == "the quick brown<error: tier 'primary' broke mid-stream>"
    if temperature is None:  # asked, and billed: its attempt says so
        assert [a.tier for a in outcome.all_attempts()] == ["primary", "spare"]
        assert outcome.all_attempts()[-1].outcome == "error"
    else:  # nothing asked of the spare
        assert spare.calls == 0


class _RefusesPrefill(FakeBackend):
    """A tier declared `continuation: prefill` whose provider refuses an assistant message
    last (a 400), and answers whole when asked again without it."""

    async def stream(self, prompt: Prompt, params: GenerationParams) -> Any:
        self.calls += 1
        if prompt.messages[-1].role == "assistant":
            raise BackendError("error", "upstream answered 400: assistant prefill unsupported", 400)
        yield StreamEvent(text=ANSWER)
        yield StreamEvent(finish_reason="stop", prompt_tokens=9, completion_tokens=9, model="s")


async def test_a_tier_that_refuses_the_prefill_regenerates_instead() -> None:
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    spare = _RefusesPrefill("spare")
    cascade, decision = _cascade("prefill", primary=primary, spare=spare)
    text, outcome = await _read(cascade, decision, _request())
    assert text == ANSWER
    broken, refused, repaired = outcome.all_attempts()
    assert (broken.outcome, refused.outcome, repaired.outcome) == ("error", "error", "accepted")
    assert refused.repair["method"] == "prefill" and "400" in refused.repair["error"]
    assert repaired.repair["method"] == "regenerate" and spare.calls == 2


class _DownSpare(FakeBackend):
    async def stream(self, prompt: Prompt, params: GenerationParams) -> Any:
        self.calls += 1
        raise BackendError("error", "upstream answered 503: down", 503)
        yield StreamEvent()  # pragma: no cover - a generator that fails at once


async def test_a_prefill_tier_that_is_down_is_not_asked_twice() -> None:
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    spare = _DownSpare("spare")
    cascade, decision = _cascade("prefill", primary=primary, spare=spare)
    text, _ = await _read(cascade, decision, _request())
    assert text == "the quick brown<error: tier 'primary' broke mid-stream>"
    assert spare.calls == 1


async def test_a_live_local_step_that_breaks_continues_on_the_next_step() -> None:
    loaded = parse_policy(
        b"""
tiers:
  small: {type: llama_cpp, continuation: prefill}
  large: {type: openai, model: l}
routes:
  live:
    stream: live
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
""",
        env={},
    )
    small = FakeBackend("small", [Script(ANSWER, None, break_after=3)], local=True)
    large = FakeBackend("large", [Script(ANSWER, None)])
    cascade = Cascade(loaded.policy, {"small": small, "large": large})
    decision = decide(loaded.policy, {}, Facts(model="live"))
    text, outcome = await _read(cascade, decision, _request())
    assert text == ANSWER
    assert [(a.tier, a.outcome) for a in outcome.all_attempts()] == [
        ("small", "error"),
        ("large", "accepted"),
    ]
    assert outcome.all_attempts()[-1].repair["of"] == "small"


class _SlowSpare(FakeBackend):
    """A spare that starts its answer (the provider bills from here on) and then stalls:
    its first chunk is still on its way when the client leaves."""

    first: str = "the qu"  # within what was sent: nothing for the client yet

    async def stream(self, prompt: Prompt, params: GenerationParams) -> Any:
        self.calls += 1
        try:
            await asyncio.sleep(0.05)
            yield StreamEvent(text=self.first, raw={"id": "chatcmpl-spare-1"})
            await asyncio.Event().wait()  # never: the client leaves first
        finally:
            self.streams_closed += 1


@pytest.mark.parametrize(
    "first", ["the qu", "the quick brown fox"], ids=["within what was sent", "past it"]
)
async def test_a_client_leaving_while_a_repair_starts_leaves_its_attempt(first: str) -> None:
    """The spare was asked (and bills what it generated): its attempt is in the record,
    named by the provider's id (its first chunk, waited for briefly), even though the client
    left before that chunk came; and the spare is stopped either way."""
    primary = FakeBackend("primary", [Script(ANSWER, None, break_after=3)])
    spare = _SlowSpare("spare")
    spare.first = first
    cascade, decision = _cascade("regenerate", primary=primary, spare=spare)
    outcome = await cascade.run(decision, _request())
    assert outcome.live is not None
    live = outcome.live

    async def read() -> None:
        async for _ in live.events:
            pass

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)  # the repair is waiting on the spare's first chunk
    reader.cancel()  # the client is gone
    with pytest.raises(asyncio.CancelledError):
        await reader
    await live.aclose()
    repair = outcome.all_attempts()[-1]
    assert (repair.tier, repair.outcome, repair.upstream_id) == (
        "spare",
        "client_gone",
        "chatcmpl-spare-1",
    )
    assert spare.streams_closed == 1
