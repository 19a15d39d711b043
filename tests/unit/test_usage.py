"""Every attempt's tokens are what its tier will bill, and say where they come from
(`usage_source`): reported by the provider, counted by the gateway, or estimated when an
answer broke off, was left by its client, or came without usage (router/usage.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from router.backends.base import BackendError, GenerationParams, Message, Prompt, StreamEvent
from router.backends.openai_http import OpenAIHTTPBackend, OpenAITier
from router.cascade import Cascade
from router.outcomes import Abandoned
from router.policy import parse_policy
from router.request import BillableInput, ClientRequest
from router.routing import Facts, decide
from router.usage import Meter, TierUsage, prompt_basis
from tests.support.fake_upstream import Faults, create_app
from tests.support.fakes import FakeBackend, Script

LOADED = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  remote: {cascade: [{tier: large}]}
  local: {cascade: [{tier: small}]}
""",
    env={},
)
TEXT = "one two three four five six seven eight"


def request(*, stream: bool, max_tokens: int = 16, choices: int = 1) -> ClientRequest:
    prompt = Prompt(messages=(Message("user", "What is 2 + 2? " * 10),))
    params = GenerationParams(max_tokens=max_tokens)
    return ClientRequest("remote", prompt, params, stream, False, choices=choices)


def run(route: str, **backends: FakeBackend) -> tuple[Cascade, Any]:
    tiers: dict[str, Any] = {"small": None, "large": None, **backends}
    found = decide(LOADED.policy, {}, Facts(model=route))
    assert found is not None
    return Cascade(LOADED.policy, tiers), found


@pytest.mark.parametrize("stream", [False, True])
async def test_reported_and_counted_usage_are_said_to_be(stream: bool) -> None:
    for route, backend, source in (
        ("remote", FakeBackend("large", [Script(TEXT, None)]), "reported"),
        ("local", FakeBackend("small", [Script(TEXT, None)], local=True), "counted"),
    ):
        cascade, decision = run(route, **{backend.name: backend})
        outcome = await cascade.run(decision, request(stream=stream))
        if outcome.live is not None:
            async for _ in outcome.live.events:
                pass
            await outcome.live.aclose()
        (attempt,) = outcome.all_attempts()
        assert (attempt.usage_source, attempt.completion_tokens) == (source, 8)


async def test_a_stream_that_breaks_is_priced_by_what_it_sent() -> None:
    """Five words came before the tier broke off: five tokens generated, and the prompt it
    read; both estimated."""
    large = FakeBackend("large", [Script(TEXT, None, break_after=5)])
    cascade, decision = run("remote", large=large)
    outcome = await cascade.run(decision, request(stream=True))
    assert outcome.live is not None
    with pytest.raises(BackendError):
        async for _ in outcome.live.events:
            pass
    await outcome.live.aclose()
    (attempt,) = outcome.all_attempts()
    assert (attempt.outcome, attempt.usage_source) == ("error", "estimated")
    assert attempt.completion_tokens == 5
    assert attempt.prompt_tokens == prompt_basis(request(stream=True)) > 0


async def test_a_stream_the_client_leaves_is_priced_by_what_it_passed_on() -> None:
    large = FakeBackend("large", [Script(TEXT, None)])
    cascade, decision = run("remote", large=large)
    outcome = await cascade.run(decision, request(stream=True))
    assert outcome.live is not None
    seen = 0
    async for _ in outcome.live.events:
        seen += 1
        if seen == 3:
            break
    await outcome.live.aclose()
    (attempt,) = outcome.all_attempts()
    assert (attempt.outcome, attempt.usage_source) == ("client_gone", "estimated")
    assert attempt.completion_tokens == 3
    assert attempt.prompt_tokens > 0


async def test_a_whole_answer_the_client_leaves_is_estimated_within_its_bound() -> None:
    """Nothing learned about the tier yet: the output bound (max_tokens x n)."""

    class Slow(FakeBackend):
        async def complete(self, prompt: Prompt, params: GenerationParams) -> Any:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

    cascade, decision = run("remote", large=Slow("large"))
    task = asyncio.create_task(cascade.run(decision, request(stream=False, choices=2)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(Abandoned) as left:
        await task
    (attempt,) = left.value.attempts
    assert (attempt.outcome, attempt.usage_source) == ("client_gone", "estimated")
    assert attempt.completion_tokens == 32 and attempt.prompt_tokens > 0


def test_what_a_tier_reported_teaches_its_estimates() -> None:
    known = TierUsage()
    asked = request(stream=True, max_tokens=500)
    basis = prompt_basis(asked)
    for _ in range(50):
        known.observe(asked, 2 * basis, 100, chunks=50, first_token_s=0.2, seconds=1.2)
    assert known.prompt(asked) == pytest.approx(2 * basis, rel=0.01)
    assert known.streamed(asked, 10) == 20  # two tokens a chunk
    assert known.elapsed(asked, 0.7) == pytest.approx(50, abs=1)  # 99 tokens a second
    assert known.elapsed(asked, 100) == 500  # never above the bound


def test_tools_and_images_are_part_of_the_prompt_estimate() -> None:
    plain = request(stream=False)
    billed = ClientRequest(
        plain.model,
        plain.prompt,
        plain.params,
        False,
        False,
        billable=BillableInput(text_bytes=4000, media_tokens=765),
    )
    assert prompt_basis(billed) == prompt_basis(plain) + 1000 + 765


def test_a_meter_keeps_usage_reported_before_a_break() -> None:
    meter = Meter(request(stream=True), TierUsage())
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    meter.add(StreamEvent(text="hi", raw=chunk))
    meter.add(StreamEvent(raw={"choices": [], "usage": {}}, prompt_tokens=21, completion_tokens=60))
    assert meter.estimate() == {
        "prompt_tokens": 21,
        "completion_tokens": 60,
        "usage_source": "reported",
    }


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Faults, OpenAIHTTPBackend]]:
    faults = Faults()
    server = TestServer(create_app(faults))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        spec = OpenAITier(type="openai", api_base=str(server.make_url("/v1")), model="fake")
        yield faults, OpenAIHTTPBackend("large", spec, session)
    await server.close()


async def test_a_stream_with_its_finish_and_usage_but_no_done_is_whole(
    upstream: tuple[Faults, OpenAIHTTPBackend],
) -> None:
    faults, backend = upstream
    faults.reset(no_done=True)
    prompt = Prompt(messages=(Message("user", "hi"),))
    events = [e async for e in backend.stream(prompt, GenerationParams(max_tokens=16))]
    final = events[-1]
    assert final.finish_reason == "stop" and final.usage_source == "reported"
    assert (final.prompt_tokens, final.completion_tokens) == (10, 6)
    faults.reset(end_after=2)  # no finish, no usage, no [DONE]: cut off
    with pytest.raises(BackendError) as cut:
        _ = [e async for e in backend.stream(prompt, GenerationParams(max_tokens=16))]
    assert cut.value.kind == "truncated"


async def test_a_whole_answer_without_usage_is_estimated(
    upstream: tuple[Faults, OpenAIHTTPBackend],
) -> None:
    faults, backend = upstream
    faults.reset(no_usage=True)
    prompt = Prompt(messages=(Message("user", "hi"),))
    answer = await backend.complete(prompt, GenerationParams(max_tokens=16))
    assert answer.usage_source == "estimated"
    cascade = Cascade(LOADED.policy, {"small": None, "large": backend})
    found = decide(LOADED.policy, {}, Facts(model="remote"))
    assert found is not None
    outcome = await cascade.run(found, request(stream=False))
    (attempt,) = outcome.attempts
    assert attempt.usage_source == "estimated"
    assert attempt.prompt_tokens > 0 and attempt.completion_tokens > 0


async def test_a_tier_that_finishes_what_its_client_left_records_the_providers_usage() -> None:
    """`on_client_gone: finish`: the call runs to its end; the attempt is `client_gone` at the
    usage the provider reported."""
    loaded = parse_policy(
        b"tiers: {large: {type: openai, model: m, on_client_gone: finish}}\n"
        b"routes: {remote: {cascade: [{tier: large}]}}\n",
        env={},
    )

    class Slow(FakeBackend):
        async def complete(self, prompt: Prompt, params: GenerationParams) -> Any:
            await asyncio.sleep(0.05)
            return await super().complete(prompt, params)

    large = Slow("large", [Script(TEXT, None)])
    cascade = Cascade(loaded.policy, {"large": large})
    found = decide(loaded.policy, {}, Facts(model="remote"))
    assert found is not None
    task = asyncio.create_task(cascade.run(found, request(stream=False)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(Abandoned) as left:
        await task
    (attempt,) = left.value.attempts
    assert (attempt.outcome, attempt.usage_source) == ("client_gone", "reported")
    assert attempt.completion_tokens == 8 and large.calls == 1
