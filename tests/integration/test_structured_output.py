"""Structured output on the local tier, with the real model: answers generated under a
llama.cpp grammar built from the client's schema, accepted only when they validate, and
escalated to the capable tier when they do not — streamed or not, through the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess
from tests.support.surface import Capital, local_then_capable

ASK = [{"role": "user", "content": "Give a person as JSON with name and age."}]


def person(minimum: int) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": minimum, "maximum": 2000},
                },
                "required": ["name", "age"],
                "additionalProperties": False,
            },
        },
    }


@pytest.fixture(scope="module")
def cascade(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> Cascade:
    # Confidence never rejects (threshold 0): whether the local answer is kept is the
    # schema check alone.
    return start_cascade(local_then_capable(start_fake_upstream()))


def answer(client: openai.OpenAI, stream: bool, **fields: Any) -> tuple[str, Any]:
    """The answer's text and the response headers, streamed or not."""
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, max_tokens=48, stream=stream, **fields
    )
    if not stream:
        return raw.parse().choices[0].message.content or "", raw.headers
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    return text, raw.headers


@pytest.mark.parametrize("stream", [False, True])
def test_a_valid_local_answer_is_served_locally(
    client: openai.OpenAI, cascade: Cascade, stream: bool
) -> None:
    text, headers = answer(client, stream, response_format=person(minimum=0))
    value = json.loads(text)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    assert headers["x-cascade-tier"] == "small"
    assert headers["x-cascade-escalations"] == "0"
    record = cascade.record(headers["x-request-id"])
    assert [(a["tier"], a["outcome"], a["output_check"]) for a in record["attempts"]] == [
        ("small", "accepted", "valid")
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_a_local_answer_that_breaks_the_schema_escalates(
    client: openai.OpenAI, cascade: Cascade, stream: bool
) -> None:
    # The grammar makes the answer JSON of the schema's shape; the bundled model writes an
    # everyday age, which `minimum: 1000` (a bound the grammar does not enforce) rejects.
    text, headers = answer(client, stream, response_format=person(minimum=1000))
    assert json.loads(text) == {"name": "fake", "age": 42}  # the capable tier's answer
    assert headers["x-cascade-tier"] == "large"
    assert headers["x-cascade-escalations"] == "1"
    record = cascade.record(headers["x-request-id"])
    small = record["attempts"][0]
    assert (small["tier"], small["outcome"]) == ("small", "escalated")
    assert small["output_check"].startswith("invalid: age: ")
    assert small["output_check"].endswith("is less than the minimum of 1000")
    assert small["confidence"]["value"] >= small["confidence"]["threshold"] == 0.0


def test_an_answer_cut_off_by_max_tokens_is_not_json_and_escalates(
    client: openai.OpenAI, cascade: Cascade
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, max_tokens=4, response_format={"type": "json_object"}
    )
    assert raw.headers["x-cascade-tier"] == "large"
    record = cascade.record(raw.headers["x-request-id"])
    assert record["attempts"][0]["output_check"] == "invalid: not JSON"


def test_json_object_and_parse_are_answered_by_the_local_tier(
    client: openai.OpenAI, cascade: Cascade
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=ASK, max_tokens=64, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(raw.parse().choices[0].message.content or ""), dict)
    parsed = client.chat.completions.parse(
        model="small",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        response_format=Capital,
        max_tokens=48,
    )
    assert isinstance(parsed.choices[0].message.parsed, Capital)


def test_an_invalid_schema_is_a_400_naming_the_param(client: openai.OpenAI) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "objekt"}}}
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="auto", messages=ASK, response_format=bad)  # type: ignore[arg-type]
    body: Any = error.value.body
    assert body["param"] == "response_format.json_schema.schema"
