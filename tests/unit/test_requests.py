from __future__ import annotations

from typing import Any

import pytest

from router.api.bodies import parse_request
from router.errors import APIError
from router.policy import LimitsSpec

LIMITS = LimitsSpec(max_output_tokens=100, default_max_tokens=10)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_defaults_and_fields() -> None:
    request = parse_request(
        chat(
            temperature=0.2,
            top_p=0.9,
            stop="\n",
            seed=3,
            user="u1",
            stream=True,
            stream_options={"include_usage": True},
        ),
        LIMITS,
        chat=True,
    )
    assert request.params.max_tokens == 10
    assert request.params.stop == ("\n",)
    assert (request.params.temperature, request.params.top_p) == (0.2, 0.9)
    assert (request.params.seed, request.params.user) == (3, "u1")
    assert request.stream and request.include_usage


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = parse_request(chat(max_tokens=5, max_completion_tokens=7), LIMITS, chat=True)
    assert request.params.max_tokens == 7


def test_developer_role_and_text_parts() -> None:
    request = parse_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi", "name": "ann"},
            ],
        },
        LIMITS,
        chat=True,
    )
    assert [m.role for m in request.prompt.messages] == ["developer", "user"]
    assert request.prompt.messages[0].content == "be brief"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        (chat(n=0), "n"),
        (chat(n=129), "n"),
        (chat(n=True), "n"),
        (chat(max_tokens=101), "max_tokens"),
        (chat(max_tokens=1.5), "max_tokens"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=True), "temperature"),
        (chat(stream="yes"), "stream"),
        (chat(user=5), "user"),
        (chat(stop=[""]), "stop"),
        (chat(logit_bias={"5": 200}), "logit_bias.5"),
        (chat(api_base="http://evil"), "api_base"),  # what re-routes the call stays refused
        (chat(tools=[{"type": "function"}]), "tools[0].function"),
        (chat(tool_choice="sometimes"), "tool_choice"),
        (chat(response_format={"type": "json_schema"}), "response_format"),
        (chat(top_logprobs=21), "top_logprobs"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "42"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": "x", "bogus": 1}]}, "messages[0]"),
        ({"model": "m", "messages": "hi"}, "messages"),
    ],
)
def test_rejections_name_the_parameter(body: Any, param: str | None) -> None:
    with pytest.raises(APIError) as error:
        parse_request(body, LIMITS, chat=True)
    assert error.value.status == 400
    assert error.value.param == param


def test_completions_take_a_prompt_string() -> None:
    request = parse_request({"model": "small", "prompt": "Once"}, LIMITS, chat=False)
    assert request.prompt.text == "Once"
    with pytest.raises(APIError):
        parse_request({"model": "small", "prompt": ["a", "b"]}, LIMITS, chat=False)
    with pytest.raises(APIError):
        parse_request({"model": "small", "messages": []}, LIMITS, chat=False)


def test_the_message_count_is_bounded_before_validation() -> None:
    limits = LimitsSpec(max_messages=2)
    two = [{"role": "user", "content": "a"}] * 2
    assert len(parse_request(chat(messages=two), limits, chat=True).prompt.messages) == 2
    with pytest.raises(APIError) as error:
        parse_request(chat(messages=[*two, {"role": "user"}]), limits, chat=True)
    assert (error.value.param, error.value.code) == ("messages", "too_many_messages")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 2**63}, "seed"),
        ({"messages": [{"role": [], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": {"a": 1}, "content": "x"}]}, "messages[0].role"),
        ({"temperature": float("inf")}, "temperature"),
        ({"max_tokens": 10**30}, "max_tokens"),
        ({"stop": [None]}, "stop"),
    ],
)
def test_extreme_values_are_400s(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as error:
        parse_request(chat(**extra), LIMITS, chat=True)
    assert (error.value.status, error.value.param) == (400, param)


def test_seeds_at_the_ends_of_the_range_and_tiny_temperatures_are_accepted() -> None:
    for seed in (-(2**63), -1, 2**63 - 1):
        assert parse_request(chat(seed=seed), LIMITS, chat=True).params.seed == seed
    assert parse_request(chat(temperature=2.5e-324), LIMITS, chat=True).params.temperature


def test_the_chat_surface_is_accepted_and_its_features_named() -> None:
    body = chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice="auto",
        parallel_tool_calls=False,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "answer", "schema": {"type": "object"},
                                         "strict": True}},
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        n=2,
        metadata={"team": "x"},
        store=False,
        reasoning_effort="low",
        seed=1,
    )  # fmt: skip
    request = parse_request(body, LIMITS, chat=True)
    assert request.features == {
        "image", "tools", "json_schema", "logprobs", "penalties", "logit_bias", "n",
    }  # fmt: skip
    # what an upstream receives: the client's fields as sent, but for model and streaming
    assert request.params.extra["messages"] == body["messages"]
    assert request.params.extra["tools"] == body["tools"]
    assert "model" not in request.params.extra
    assert request.prompt.messages[1].content == "what is this?"  # the text a local model reads


def test_plain_text_requests_have_no_features() -> None:
    assert parse_request(chat(), LIMITS, chat=True).features == frozenset()
