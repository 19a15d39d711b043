"""The response cache's parts: the LRU's bounds, entries as stored, streamed answers folded
whole, the key, and which requests may use the cache."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest

from router.api.bodies import parse_request
from router.backends.base import Completion, StreamEvent
from router.cache import Entry, Fold, ResponseCache, storable
from router.cache.response_cache import cache_key, directives
from router.cache.stores import CacheSkipped, CacheUnavailable, MemoryStore, RedisStore
from router.policy import parse_policy
from router.routing import Decision, Facts, decide

POLICY = """
tiers:
  small: {type: openai, model: s}
  large: {type: openai, model: l}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
  plain: {cascade: [{tier: large}], cache: {store: off}}
cache: {store: memory, ttl_s: 60}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_lru_keeps_its_bounds_and_drops_the_least_recently_used() -> None:
    store = MemoryStore(max_bytes=30, max_entries=3)
    for key in "abc":
        await store.put(key, b"x" * 10, 60)
    assert await store.get("a") == b"x" * 10  # a is now the most recently used
    await store.put("d", b"y" * 10, 60)
    assert await store.get("b") is None and store.size == (3, 30)
    await store.put("e", b"z" * 25, 60)  # bytes: everything else must go
    assert store.size == (1, 25) and await store.get("e") == b"z" * 25
    await store.put("huge", b"h" * 31, 60)  # over the whole bound: not kept
    assert await store.get("huge") is None and store.size == (1, 25)
    store.bound(max_bytes=10, max_entries=3)
    assert store.size == (0, 0)


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=1000, max_entries=10, clock=clock)
    await store.put("k", b"v", 5)
    clock.now = 4.9
    assert await store.get("k") == b"v"
    clock.now = 5.0
    assert await store.get("k") is None and store.size == (0, 0)
    await store.put("k", b"v2", 5)  # a key stored again replaces its bytes
    await store.put("k", b"v3", 5)
    assert store.size == (1, 2)


def test_an_entry_round_trips_and_anything_else_reads_as_a_miss() -> None:
    raw = {"object": "chat.completion", "choices": [{"message": {"tool_calls": [{"id": "c"}]}}]}
    completion = Completion("", "tool_calls", 9, 4, "m", raw=raw, cached_tokens=3)
    entry = Entry(completion, "large", cost_usd=1e-5, counterfactual_usd=2e-5, stored_at=7.0)
    back = Entry.loads(entry.dumps())
    assert back is not None and back == entry
    assert Entry.loads(b"not json") is None
    assert Entry.loads(b"[1, 2]") is None
    broken = orjson.loads(entry.dumps())
    for field, value in [("v", 2), ("prompt_tokens", True), ("raw", "x"), ("text", 5)]:
        assert Entry.loads(orjson.dumps({**broken, field: value})) is None, field
    del broken["tier"]
    assert Entry.loads(orjson.dumps(broken)) is None


def test_only_complete_answers_in_a_replayable_shape_are_stored() -> None:
    assert storable(Completion("hi", "stop", 1, 1, "m"))
    assert storable(Completion("hi", "length", 1, 1, "m"))
    assert not storable(Completion("hi", "cancelled", 1, 1, "m"))
    assert not storable(Completion("", "stop", 1, 1, "m", raw={"object": "response"}))


def _chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "up-model",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def test_a_streamed_tool_call_folds_into_the_body_a_whole_answer_would_have_been() -> None:
    fold = Fold("fallback-model")
    call = {"index": 0, "id": "call_1", "type": "function"}
    for event in [
        StreamEvent(raw=_chunk({"role": "assistant", "content": ""})),
        StreamEvent(raw=_chunk({"tool_calls": [{**call, "function": {"name": "get_"}}]})),
        StreamEvent(raw=_chunk({"tool_calls": [{"index": 0, "function": {"name": "weather"}}]})),
        StreamEvent(raw=_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"c'}}]})),
        StreamEvent(raw=_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '":1}'}}]})),
        StreamEvent(raw=_chunk({}, "tool_calls")),
        StreamEvent(
            raw={
                **_chunk({}),
                "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
            }
        ),
        StreamEvent(finish_reason="tool_calls", prompt_tokens=12, completion_tokens=7),
    ]:
        fold.add(event)
    completion = fold.completion()
    assert completion is not None and completion.raw is not None
    message = completion.raw["choices"][0]["message"]
    assert message["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"c":1}'},
        }
    ]
    assert message["content"] is None and completion.raw["object"] == "chat.completion"
    assert completion.raw["choices"][0]["finish_reason"] == "tool_calls"
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 7)
    assert completion.model == "up-model" and storable(completion)


def test_local_text_folds_with_its_logprobs() -> None:
    fold = Fold("local-model")
    token = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    fold.add(StreamEvent(text="Hi", logprobs=[token]))
    fold.add(StreamEvent(text=" there"))
    assert fold.completion() is None  # not finished yet
    fold.add(StreamEvent(finish_reason="stop", prompt_tokens=3, completion_tokens=2))
    completion = fold.completion()
    assert completion is not None and completion.raw is None
    assert (completion.text, completion.logprobs, completion.model) == (
        "Hi there",
        [token],
        "local-model",
    )


@pytest.mark.parametrize(
    "events",
    [
        [StreamEvent(raw=_chunk({"content": "a"}, index=1))],  # a second choice
        [StreamEvent(raw={"type": "response.output_text.delta", "delta": "a"})],  # Responses
        [
            StreamEvent(raw=_chunk({"content": "a"})),
            StreamEvent(raw={"object": "text_completion", "choices": []}),
        ],
    ],
    ids=["n>1", "responses-events", "mixed-kinds"],
)
def test_streams_that_cannot_be_rebuilt_exactly_are_not_kept(events: list[StreamEvent]) -> None:
    fold = Fold("m")
    for event in [*events, StreamEvent(finish_reason="stop")]:
        fold.add(event)
    assert fold.completion() is None


def _decision(policy_text: str = POLICY, model: str = "auto") -> tuple[Any, Decision]:
    loaded = parse_policy(policy_text.encode(), env={})
    facts = Facts(model, "default", frozenset(), None, "hi", frozenset())
    decision = decide(loaded.policy, {}, facts)
    assert decision is not None
    return loaded, decision


def _key(decision: Decision, body: dict[str, Any], scope: str = "team:a") -> str:
    return cache_key(
        endpoint="/v1/chat/completions", version="v1", decision=decision, scope=scope, body=body
    )


def test_the_key_covers_what_changes_the_answer_and_nothing_else() -> None:
    _, decision = _decision()
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = _key(decision, body)
    same = {**body, "stream": True, "stream_options": {"include_usage": True}, "user": "u-9"}
    assert _key(decision, dict(reversed(list(same.items())))) == key
    assert _key(decision, {**body, "temperature": 0.0001}) != key
    assert _key(decision, {**body, "max_tokens": 5}) != key
    assert _key(decision, {**body, "messages": [{"role": "user", "content": "hi "}]}) != key
    assert _key(decision, body, scope="team:b") != key
    other = cache_key(
        endpoint="/v1/chat/completions", version="v2", decision=decision, scope="team:a", body=body
    )
    assert other != key
    _, plain = _decision(model="plain")
    assert _key(plain, body) != key


def test_which_requests_use_the_cache() -> None:
    loaded, decision = _decision()
    cache = ResponseCache(None, None, on_error=print).for_policy(loaded.policy)

    def status(extra: dict[str, Any], control: str = "") -> tuple[str, bool, bool] | None:
        raw = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **extra}
        client = parse_request(raw, loaded.policy.limits, chat=True)
        found = cache.lookup(
            endpoint="/v1/chat/completions",
            version=loaded.version,
            decision=decision,
            team="a",
            body=raw,
            client=client,
            cache_control=control,
        )
        return None if found is None else (found.status, found.read, found.write)

    assert status({"temperature": 0}) == ("miss", True, True)
    assert status({"seed": 3}) == ("miss", True, True)
    assert status({"temperature": 0.2}) == ("skip", False, False)
    assert status({"temperature": 0}, "No-Cache") == ("bypass", False, True)
    assert status({"temperature": 0}, "no-cache, no-store") == ("bypass", False, False)
    assert cache.routes["plain"] is None  # `store: off` (YAML's false) is off
    assert directives(" max-age=0 , NO-STORE") == {"max-age", "no-store"}


def test_a_route_on_redis_needs_a_redis_to_load() -> None:
    loaded, _ = _decision(POLICY.replace("store: memory", "store: redis"))
    with pytest.raises(ValueError, match="caches in redis but neither"):
        ResponseCache(None, None, on_error=print).for_policy(loaded.policy)
    on_env, _ = _decision(POLICY.replace("cache: {store: memory, ttl_s: 60}", ""))
    environment = ResponseCache("memory", None, on_error=print).for_policy(on_env.policy)
    assert environment.routes["auto"] is not None and environment.routes["plain"] is None
    assert ResponseCache(None, None, on_error=print).for_policy(on_env.policy).routes == {
        "auto": None,
        "plain": None,
    }


async def test_an_unreachable_redis_is_a_miss_then_skipped_for_a_while() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = Clock()
    store = RedisStore(f"redis://127.0.0.1:{port}", timeout_s=0.5, retry_s=5, clock=clock)
    try:
        with pytest.raises(CacheUnavailable) as first:
            await store.get("k")
        assert not isinstance(first.value, CacheSkipped)
        with pytest.raises(CacheSkipped):
            await store.put("k", b"v", 60)
        clock.now = 5.0
        with pytest.raises(CacheUnavailable) as again:
            await store.get("k")
        assert not isinstance(again.value, CacheSkipped)  # asked again after retry_s
    finally:
        await store.aclose()
