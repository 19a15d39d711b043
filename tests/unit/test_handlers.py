"""The completion handlers in-process over in-memory backends: headers, bodies, streams and
the decision record agree on every path (streamed and not, answered, degraded, failed)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.app import create_app
from router.backends.base import Backend, BackendError
from router.budgets import Limiter
from router.budgets.store import MemoryStore
from router.keys import KeyIndex
from router.settings import Settings
from router.state import RUNTIME, Runtime
from tests.support.cascade import read_ledger
from tests.support.fakes import UNSURE, FakeBackend, Script

POLICY = """
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m, price: {input_per_1m: 1.0, output_per_1m: 2.0}}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
"""
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
Serve = Callable[..., Any]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """An app on POLICY whose tiers are the given fakes; returns (client, ledger URL)."""
    clients: list[TestClient[Any, Any]] = []
    # The app starts on a copy whose tiers build no backend (openai tiers without api_base:
    # no model is loaded), then serves POLICY with the given fakes as its backends.
    (tmp_path / "policy.yaml").write_text(
        POLICY.replace("{type: llama_cpp}", "{type: openai, model: s}")
    )
    ledger = f"jsonl:///{tmp_path / 'ledger.jsonl'}"

    async def start(
        policy: str = POLICY, **backends: FakeBackend | None
    ) -> tuple[TestClient[Any, Any], str]:
        from router.policy import parse_policy

        settings = Settings(
            policy_path=tmp_path / "policy.yaml",
            ledger_url=ledger,
            spool_folder=tmp_path / "spool",
        )
        app = create_app(settings)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        loaded = parse_policy(policy.encode(), env={})
        tiers: dict[str, Backend | None] = {"small": None, "large": None}
        tiers.update(backends)
        keys = KeyIndex(loaded.policy, [], file_in_use=False)
        limiter = Limiter(loaded.policy, MemoryStore(), clock=time.time, on_error=print)
        app[RUNTIME].current = Runtime(loaded, tiers, keys, limiter)
        return client, ledger

    yield start
    for client in clients:
        await client.close()


async def sse(response: Any) -> tuple[str, list[dict[str, Any]]]:
    """The text of a streamed answer and its chunks (until [DONE])."""
    chunks = []
    async for line in response.content:
        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
            chunks.append(json.loads(line[6:]))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices"))
    return text, chunks


def record_of(ledger: str, request_id: str) -> dict[str, Any]:
    (record,) = [r for r in read_ledger(ledger) if r["request_id"] == request_id]
    return record


@pytest.mark.parametrize("stream", [False, True])
async def test_an_escalated_answer_reports_one_escalation_on_both_paths(
    serve: Serve, stream: bool
) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)], local=True)
    large = FakeBackend("large", [Script("the answer is four", None)])
    client, ledger = await serve(small=small, large=large)
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status == 200
    headers = response.headers
    assert headers["x-cascade-escalations"] == "1"
    assert (headers["x-cascade-tier"], headers["x-cascade-model"]) == ("large", "large-model")
    assert (headers["x-cascade-route"], headers["x-cascade-degraded"]) == ("auto", "false")
    assert len(headers["x-cascade-policy"]) == 12
    if stream:
        text, _ = await sse(response)
    else:
        text = (await response.json())["choices"][0]["message"]["content"]
    assert text == "the answer is four"
    request_id = headers["x-request-id"]
    await client.close()  # the ledger is flushed at shutdown
    record = record_of(ledger, request_id)
    assert record["stream"] is stream
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [
        ("small", "escalated"),
        ("large", "accepted"),
    ]
    assert (record["final_tier"], record["status"], record["http_status"]) == ("large", "ok", 200)
    assert record["attempts"][0]["local"] is True and record["attempts"][1]["local"] is False
    assert record["attempts"][1]["completion_tokens"] == 4
    assert record["cost_usd"] == pytest.approx(
        4 * 2.0 / 1e6 + record["attempts"][1]["prompt_tokens"] / 1e6
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_degraded_answer_says_so_on_both_paths(serve: Serve, stream: bool) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)], local=True)
    client, ledger = await serve(small=small)  # large not configured
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status == 200
    assert response.headers["x-cascade-degraded"] == "true"
    assert response.headers["x-cascade-escalations"] == "1"
    assert response.headers["x-cascade-tier"] == "small"
    text = (
        (await sse(response))[0]
        if stream
        else (await response.json())["choices"][0]["message"]["content"]
    )
    assert text == "maybe five"
    request_id = response.headers["x-request-id"]
    await client.close()
    record = record_of(ledger, request_id)
    assert record["status"] == "degraded"
    assert [a["outcome"] for a in record["attempts"]] == ["degraded", "error"]


@pytest.mark.parametrize(
    ("errors", "status", "code"),
    [
        (["shed", "shed"], 503, "overloaded"),
        (["error", "timeout"], 504, "upstream_error"),
        (["error", "unavailable"], 503, "upstream_error"),
        (["error", "error"], 502, "upstream_error"),
    ],
)
async def test_a_failed_cascade_maps_to_a_status_and_keeps_its_attempts(
    serve: Serve, errors: list[Any], status: int, code: str
) -> None:
    small = FakeBackend("small", [Script(error=BackendError(errors[0], "first"))])
    large = FakeBackend("large", [Script(error=BackendError(errors[1], "second"))])
    full = POLICY + "ledger: {rejections: full}\n"  # overload refusals recorded too
    client, ledger = await serve(full, small=small, large=large)
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status == status
    body = await response.json()
    assert body["error"]["code"] == code
    if code == "overloaded":
        assert response.headers["Retry-After"] == "1"
    else:
        assert body["error"]["message"] == "second"  # the last tier's error
    request_id = response.headers["x-request-id"]
    await client.close()
    record = record_of(ledger, request_id)
    assert (record["status"], record["http_status"]) == ("error", status)
    assert [a["tier"] for a in record["attempts"]] == ["small", "large"]
    assert record["route"] == "auto" and record["final_tier"] is None


async def test_a_stream_that_breaks_ends_with_an_error_event_and_an_error_record(
    serve: Serve,
) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)])
    large = FakeBackend("large", [Script("one two three", None, break_after=2)])
    client, ledger = await serve(small=small, large=large)
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.headers["x-cascade-escalations"] == "1"
    text, chunks = await sse(response)
    assert text == "one two" and "error" in chunks[-1]
    request_id = response.headers["x-request-id"]
    await client.close()
    record = record_of(ledger, request_id)
    assert record["status"] == "error"
    assert [a["outcome"] for a in record["attempts"]] == ["escalated", "error"]


async def test_usage_is_sent_last_when_asked(serve: Serve) -> None:
    client, _ = await serve(small=FakeBackend("small", [Script("four")]))
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/chat/completions", json=body)
    _, chunks = await sse(response)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_invalid_and_unknown_requests_are_recorded_without_a_route(serve: Serve) -> None:
    client, ledger = await serve(small=FakeBackend("small"))
    bad = await client.post("/v1/chat/completions", json={**CHAT, "temperature": 9})
    unknown = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-17"})
    assert (bad.status, unknown.status) == (400, 404)
    ids = [bad.headers["x-request-id"], unknown.headers["x-request-id"]]
    await client.close()
    for request_id, status in zip(ids, (400, 404), strict=True):
        record = record_of(ledger, request_id)
        assert (record["status"], record["http_status"]) == ("invalid", status)
        assert record["route"] is None and record["attempts"] == []


@pytest.mark.parametrize("mode", ["aggregate", "full"])
async def test_overload_refusals_are_counted_not_recorded_unless_asked(
    serve: Serve, mode: str
) -> None:
    shed = Script(error=BackendError("shed", "saturated"))
    policy = POLICY + f"ledger: {{rejections: {mode}}}\n"
    client, ledger = await serve(
        policy, small=FakeBackend("small", [shed]), large=FakeBackend("large", [shed])
    )
    ids = []
    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        ids.append(response.headers["x-request-id"])
    metrics = await (await client.get("/metrics")).text()
    answered = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-17"})
    await client.close()
    records = {r["request_id"] for r in read_ledger(ledger)}
    assert answered.headers["x-request-id"] in records  # other requests are recorded as ever
    if mode == "aggregate":
        assert not records & set(ids)
        assert 'cascade_rejected_total{reason="saturated",route="auto",team="default"} 3.0' in (
            metrics
        )
    else:
        assert set(ids) <= records


class Buggy(FakeBackend):
    async def complete(self, prompt: Any, params: Any) -> Any:
        raise ValueError("a bug")


async def test_an_internal_error_is_a_500_and_its_record_keeps_every_attempt(
    serve: Serve,
) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)])
    client, ledger = await serve(small=small, large=Buggy("large"))
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal_error"
    request_id = response.headers["x-request-id"]
    await client.close()
    record = record_of(ledger, request_id)
    assert (record["status"], record["http_status"]) == ("error", 500)
    assert record["error"] == "internal error (ValueError)"
    assert [a["outcome"] for a in record["attempts"]] == ["escalated"]


class BuggyEmbedder(FakeBackend):
    async def embed(self, body: Any) -> dict[str, Any]:
        raise ValueError("a bug")


async def test_embeddings_share_the_failure_record_of_completions(serve: Serve) -> None:
    client, ledger = await serve(small=FakeBackend("small"), large=BuggyEmbedder("large"))
    response = await client.post("/v1/embeddings", json={"model": "auto", "input": "text"})
    assert response.status == 500
    request_id = response.headers["x-request-id"]
    await client.close()
    record = record_of(ledger, request_id)
    assert (record["status"], record["http_status"]) == ("error", 500)
    assert record["error"] == "internal error (ValueError)"
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("small", "skipped")]
