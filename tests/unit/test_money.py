"""Money in-process: a budget's reservation bounds what the provider may bill for the whole
request (tools, tool calls, images, `n`), so a request that could overspend what is left is
refused before any tier is called."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import pytest

from router.audit.aggregate import Aggregator
from router.audit.report import figures
from tests.support.app import Serve, record_of
from tests.support.cascade import read_ledger
from tests.support.fakes import FakeBackend, Script

# $1 per 1M tokens in and out: a $0.01 day is 10,000 tokens.
POLICY = """
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m, price: {input_per_1m: 1.0, output_per_1m: 1.0}}
routes:
  remote: {cascade: [{tier: large}]}
teams:
  default: {limits: {usd_per_day: 0.01}}
limits: {max_prompt_tokens: 200000, max_output_tokens: 4096, default_max_tokens: 16}
"""
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a thing up. " * 8,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}


def _png(width: int, height: int) -> str:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    data = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(data + b"\x00" * 20_000).decode()


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "remote", "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    "shape",
    [
        {"tools": [TOOL] * 128},  # ~40 KB of definitions: ~10k tokens at least is possible
        {"n": 128, "max_tokens": 100},  # 12,800 output tokens
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": "x" * 20_000},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "ok"},
            ]
        },
    ],
    ids=["128 tools", "n 128", "large tool-call arguments"],
)
async def test_a_request_that_could_overspend_is_refused_before_any_tier(
    serve: Serve, shape: dict[str, Any]
) -> None:
    large = FakeBackend("large", [Script("ok", None)])
    client, _ = await serve(POLICY, large=large)
    response = await client.post("/v1/chat/completions", json=_chat(**shape))
    assert response.status == 429, await response.text()
    error = (await response.json())["error"]
    assert error["type"] == "insufficient_quota"
    # the refusal says what holds the budget: what was spent, and what is held in flight
    assert "($0.0100): $0.0000 spent, $0.0000 held for requests in progress" in error["message"]
    assert large.calls == 0
    plain = await client.post("/v1/chat/completions", json=_chat())
    assert plain.status == 200 and large.calls == 1  # the team's day is not spent


async def test_images_are_reserved_by_their_pixels(serve: Serve) -> None:
    """A 768 x 2048 image is 1,445 tokens: six of them and 16 output tokens fit in the
    day's 10,000, seven do not (their bytes do not count, their pixels do)."""
    large = FakeBackend("large", [Script("ok", None)])
    client, ledger = await serve(POLICY, large=large)

    def images(count: int) -> dict[str, Any]:
        part = {"type": "image_url", "image_url": {"url": _png(768, 2048)}}
        return _chat(messages=[{"role": "user", "content": [part] * count}])

    refused = await client.post("/v1/chat/completions", json=images(7))
    assert refused.status == 429 and large.calls == 0
    admitted = await client.post("/v1/chat/completions", json=images(6))
    assert admitted.status == 200, await admitted.text()
    await client.close()
    record = record_of(ledger, admitted.headers["x-request-id"])
    assert record["budget"]["decision"] == "ok"


CACHED = """
tiers:
  large: {type: openai, model: m, price: {input_per_1m: 1.0, output_per_1m: 1.0}}
routes:
  remote: {cascade: [{tier: large}], cache: {store: memory}}
teams:
  default: {limits: {usd_per_day: 1.0, requests_per_minute: 100, tokens_per_minute: 100000}}
"""


async def test_a_cache_hit_counts_as_a_request_and_spends_nothing(serve: Serve) -> None:
    """Documented in README (Budgets): a hit is one request against requests_per_minute,
    $0 and 0 tokens against budgets and tokens_per_minute; the provider is not called."""
    large = FakeBackend("large", [Script("four", None)])
    client, ledger = await serve(CACHED, large=large)
    ask = _chat(temperature=0)
    first = await client.post("/v1/chat/completions", json=ask)
    hit = await client.post("/v1/chat/completions", json=ask)
    assert hit.headers["x-cascade-cache"] == "hit" and large.calls == 1
    spend = await (await client.get("/v1/spend")).json()
    await client.close()
    paid = record_of(ledger, first.headers["x-request-id"])
    free = record_of(ledger, hit.headers["x-request-id"])
    assert (free["cost_usd"], free["attempts"]) == (0, [])
    assert spend["spent_usd"]["day"] == pytest.approx(paid["cost_usd"])
    assert spend["reserved_usd"] == 0
    tokens = sum(a["prompt_tokens"] + a["completion_tokens"] for a in paid["attempts"])
    assert spend["this_minute"] == {"requests": 2, "tokens": tokens}


RATED = """
tiers:
  large: {type: openai, model: m, price: {input_per_1m: 1.0, output_per_1m: 1.0}}
routes:
  remote: {cascade: [{tier: large}]}
teams:
  default: {limits: {requests_per_minute: 1}}
"""


async def test_refusals_are_counted_as_such_and_summed_per_team_in_the_ledger(
    serve: Serve,
) -> None:
    """A 429 for a team's rate is `refused` (not `invalid`) in /metrics, and its per-second
    summary is a ledger record the audit reads per team."""
    large = FakeBackend("large", [Script("ok", None)])
    client, ledger = await serve(RATED, large=large)
    assert (await client.post("/v1/chat/completions", json=_chat())).status == 200
    assert (await client.post("/v1/chat/completions", json=_chat())).status == 429
    metrics = await (await client.get("/metrics")).text()
    assert 'cascade_requests_total{route="remote",status="refused",tier="-"} 1.0' in metrics
    await client.close()  # the summary is flushed as the server stops
    (summary,) = [r for r in read_ledger(ledger) if r.get("kind") == "rejections"]
    assert summary["team"] == "default"
    assert summary["counts"] == [{"route": "remote", "reason": "rate_limit_exceeded", "count": 1}]
    agg = Aggregator(["team"])
    for found in read_ledger(ledger):
        agg.add(found)
    assert figures(agg.groups[("default",)])["refused"] == 1
