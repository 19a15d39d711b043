"""A request read in the offload worker and handed back (router/api/surfaces.py `Packed`):
rebuilt from what it kept and the body's JSON, it is the request the loop would have read."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from router.api.surfaces import CHAT, COMPLETIONS, RESPONSES, Surface, pack, unpack
from router.policy.model import LimitsSpec

_SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
_CHATS: list[dict[str, Any]] = [
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
        "stop": ["x", "y"],
        "seed": 7,
        "user": "u-1",
        "temperature": 0.3,
        "max_completion_tokens": 40,
        "metadata": {"k": "v"},
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "look"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [_TOOL],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _SCHEMA}},
    },
    {"model": "auto", "messages": [{"role": "user", "content": "x" * 480}] * 64},
]


def _round_trip(surface: Surface, body: dict[str, Any]) -> None:
    limits = LimitsSpec()
    read = surface.read(body, limits)
    packed = pack(read)
    assert packed is not None
    assert packed.client.params.extra == {} and packed.client.prompt.messages == ()
    rebuilt = unpack(pickle.loads(pickle.dumps(packed)), body)
    assert rebuilt == read  # messages, fields passed on, schema, features, billable input


@pytest.mark.parametrize("body", _CHATS)
def test_a_chat_request_comes_back_as_read(body: dict[str, Any]) -> None:
    _round_trip(CHAT, body)


def test_a_completions_request_comes_back_as_read() -> None:
    _round_trip(COMPLETIONS, {"model": "auto", "prompt": "once upon", "max_tokens": 5})


def test_a_responses_request_is_not_packed() -> None:
    read = RESPONSES.read({"model": "auto", "input": "hi"}, LimitsSpec())
    assert pack(read) is None
