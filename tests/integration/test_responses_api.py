"""POST /v1/responses through the official openai SDK: translated to chat completions on
every tier (the real local model on `auto`, an upstream that answers like a capable model
for tools), and back — whole and streamed, text, tools, a tool-result round trip,
structured output; what has no sound translation is a clear 400."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess
from tests.support.surface import RESPONSES_WEATHER, Capital, last_body, local_then_capable

WEATHER = RESPONSES_WEATHER


@pytest.fixture(scope="module")
def upstream(start_fake_upstream: Callable[..., ServerProcess]) -> ServerProcess:
    return start_fake_upstream()


@pytest.fixture(scope="module")
def cascade(start_cascade: StartCascade, upstream: ServerProcess) -> Cascade:
    native = f"""
  native: {{type: openai, api_base: "{upstream.url}/v1", model: capable-model,
            responses_api: true}}"""
    policy = local_then_capable(upstream, more_tiers=native)
    return start_cascade(policy + "  agents: {cascade: [{tier: small}, {tier: native}]}\n")


@pytest.mark.parametrize("model", ["auto", "small"])
def test_text_from_the_local_tier(client: openai.OpenAI, cascade: Cascade, model: str) -> None:
    raw = client.responses.with_raw_response.create(
        model=model, instructions="Answer briefly.", input="Say hi.", max_output_tokens=8
    )
    response = raw.parse()
    assert response.output_text
    assert response.status in ("completed", "incomplete")
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert raw.headers["x-cascade-tier"] == "small"
    record = cascade.record(raw.headers["x-request-id"])
    assert record["endpoint"] == "/v1/responses" and record["status"] == "ok"
    assert record["attempts"][-1]["completion_tokens"] == response.usage.output_tokens


def test_streamed_text_events_in_order(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.responses.with_raw_response.create(
        model="auto", input="Say hi.", max_output_tokens=8, stream=True
    )
    events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas and done.text == deltas
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas and final.usage is not None
    assert raw.headers["x-cascade-tier"] == "small"
    assert raw.headers["x-cascade-escalations"] == "0"
    record = cascade.record(raw.headers["x-request-id"])
    assert record["stream"] and record["attempts"][-1]["completion_tokens"] == (
        final.usage.output_tokens
    )


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_the_round_trip(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess, stream: bool
) -> None:
    ask = "What is the weather in Paris?"
    if stream:
        with client.responses.stream(model="auto", input=ask, tools=[WEATHER]) as events:  # type: ignore[list-item]
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
    else:
        response = client.responses.create(model="auto", input=ask, tools=[WEATHER])  # type: ignore[list-item]
    call = response.output[0]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    sent = last_body(upstream)
    assert sent["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    ]
    follow = client.responses.create(
        model="auto",
        tools=[WEATHER],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": ask},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"c": 21}'},
        ],
    )
    assert follow.output
    messages = last_body(upstream)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"c": 21}'}


def test_structured_output_with_parse(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.responses.with_raw_response.parse(
        model="auto", input="What is the capital of France?", text_format=Capital,
        max_output_tokens=48,
    )  # fmt: skip
    assert isinstance(raw.parse().output_parsed, Capital)
    record = cascade.record(raw.headers["x-request-id"])
    assert record["attempts"][-1]["output_check"] == "valid"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"background": True}, "background"),
    ],
)
def test_what_has_no_translation_is_a_clear_400(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": "auto", "input": "hi", **fields}
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/responses", body=body, cast_to=dict)
    detail: Any = error.value.body
    assert detail["param"] == param and detail["code"] == "unsupported_feature"
    assert "speaks the Responses API" in detail["message"]


def test_an_unknown_field_is_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/responses", body={"model": "auto", "input": "hi", "api_base": "x"},
                    cast_to=dict)  # fmt: skip
    detail: Any = error.value.body
    assert detail["param"] == "api_base"


HOSTED = {
    "previous_response_id": "resp_earlier",
    "tools": [{"type": "web_search"}],
    "include": ["web_search_call.action.sources"],
}


@pytest.mark.parametrize("stream", [False, True])
def test_what_needs_the_responses_api_reaches_a_tier_that_speaks_it_as_sent(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess, stream: bool
) -> None:
    sent: dict[str, Any] = {"input": "And the news today?", "store": True, **HOSTED}
    if stream:
        raw = client.responses.with_raw_response.create(model="agents", stream=True, **sent)
        events = list(raw.parse())
        assert [e.sequence_number for e in events] == list(range(len(events)))  # the upstream's
        final = events[-1].response  # type: ignore[union-attr]
    else:
        raw = client.responses.with_raw_response.create(model="agents", **sent)
        final = raw.parse()
    assert (final.id, final.output_text) == ("resp_fake", "Hello from the fake upstream.")
    assert final.previous_response_id == "resp_earlier"
    received = last_body(upstream)
    expected = {
        **sent,
        "model": "capable-model",
        "max_output_tokens": received["max_output_tokens"],
    }
    if stream:
        expected["stream"] = True
    assert received == expected
    assert raw.headers["x-cascade-tier"] == "native"
    record = cascade.record(raw.headers["x-request-id"])
    assert [(a["tier"], a["outcome"], a["error"]) for a in record["attempts"]] == [
        ("small", "skipped", "skipped: responses"),
        ("native", "accepted", None),
    ]
    served = record["attempts"][-1]
    assert (served["prompt_tokens"], served["cached_tokens"]) == (12, 4)


def test_a_plain_request_to_a_tier_that_speaks_it_is_not_translated(
    client: openai.OpenAI, upstream: ServerProcess
) -> None:
    response = client.responses.create(model="native", input="Hi", instructions="Be brief.")
    assert response.id == "resp_fake"
    received = last_body(upstream)
    assert received["input"] == "Hi" and received["instructions"] == "Be brief."
    assert "messages" not in received
