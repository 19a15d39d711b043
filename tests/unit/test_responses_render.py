"""Answers written back: a whole upstream answer as stream chunks, and chat answers as
Responses objects and events (tool calls, refusals, usage details)."""

from __future__ import annotations

from typing import Any

import orjson

from router.api.render import ChunkWriter, as_chunks
from router.api.responses.render import ResponseEvents, Shell, response_body
from router.api.responses.request import ResponsesBody, to_chat
from router.errors import APIError

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
        }
    ],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


def frames(data: bytes) -> list[Any]:
    return [
        orjson.loads(line[6:])
        for line in data.split(b"\n")
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]


def test_a_whole_answer_streams_as_chunks_with_its_tool_calls_and_usage() -> None:
    chunks = as_chunks(ANSWER, chat=True)
    delta = chunks[0]["choices"][0]["delta"]
    assert delta["tool_calls"] == [{"index": 0, **CALL}]
    assert chunks[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[0]["system_fingerprint"] == "fp"
    assert chunks[1]["choices"] == [] and chunks[1]["usage"] == ANSWER["usage"]
    writer = ChunkWriter("r", "m", chat=True, include_usage=False)
    sent = b"".join(writer.chunk(chunk) for chunk in chunks) + writer.end("stop", (0, 0))
    assert [frame.get("usage") for frame in frames(sent)] == [None]  # not asked for
    assert sent.endswith(b"data: [DONE]\n\n")


def request(**fields: Any) -> ResponsesBody:
    return ResponsesBody.model_validate({"model": "auto", "input": "hi", **fields})


def test_a_chat_answer_as_a_response() -> None:
    body = response_body(Shell("r1", request(), "m"), ANSWER)
    assert body["output"] == [
        {
            "type": "function_call",
            "id": "fc_call_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        }
    ]
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    refused = {
        "choices": [{"finish_reason": "length", "message": {"content": "no", "refusal": "I can't"}}]
    }
    body = response_body(Shell("r1", request(), "m"), refused)
    assert [part["type"] for part in body["output"][0]["content"]] == ["output_text", "refusal"]
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_streamed_text_and_calls_become_ordered_events() -> None:
    events = ResponseEvents(Shell("r1", request(), "m"))
    data = events.piece("Hel") + events.piece("lo")
    data += events.chunk(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    }
                }
            ]
        }
    )
    data += events.chunk(
        {
            "choices": [
                {
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        }
    )
    data += events.chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    data += events.end(None, (0, 0))
    sent = frames(data)
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    kinds = [e["type"] for e in sent]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    final = sent[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["arguments"] == '{"a": 1}'
    assert final["usage"]["total_tokens"] == 7
    event_lines = [line for line in data.split(b"\n") if line.startswith(b"event: ")]
    assert len(event_lines) == len(sent)


def test_a_break_after_the_first_byte_is_an_error_then_failed() -> None:
    events = ResponseEvents(Shell("r1", request(), "m"))
    sent = frames(
        events.piece("x") + events.failed(APIError(502, "upstream broke", code="upstream_error"))
    )
    assert [e["type"] for e in sent[-2:]] == ["error", "response.failed"]
    assert sent[-1]["response"]["error"] == {"code": "upstream_error", "message": "upstream broke"}


def test_parallel_function_calls_become_one_assistant_message() -> None:
    body = request(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "two cities"}]},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
        ],
        instructions="be brief",
        max_output_tokens=9,
        text={"format": {"type": "json_object"}},
    )
    chat = to_chat(body)
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert chat["messages"][1] == {"role": "user", "content": "two cities"}
    assert [c["id"] for c in chat["messages"][2]["tool_calls"]] == ["a", "b"]
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "a", "content": "1"}
    assert chat["max_completion_tokens"] == 9
    assert chat["response_format"] == {"type": "json_object"}


def test_a_whole_response_from_a_tier_that_speaks_the_api_streams_as_its_events() -> None:
    native = {
        "id": "resp_up",
        "object": "response",
        "status": "completed",
        "model": "m",
        "output": [
            {
                "type": "message",
                "id": "msg_up",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hi!", "annotations": []}],
            },
            {
                "type": "function_call",
                "id": "fc_up",
                "call_id": "c1",
                "name": "f",
                "arguments": "{}",
                "status": "completed",
            },
        ],
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    }
    events = ResponseEvents(Shell("r1", request(), "m"))
    sent = frames(events.whole(native) + events.end("stop", (0, 0)))
    kinds = [e["type"] for e in sent]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.done") == 2
    assert sent[-1]["response"] == native  # the upstream's own, not rebuilt
    delta = next(e for e in sent if e["type"] == "response.output_text.delta")
    assert (delta["delta"], delta["item_id"]) == ("Hi!", "msg_up")
    passed = ResponseEvents(Shell("r2", request(), "m"))
    upstream_event = {"type": "response.output_text.delta", "sequence_number": 7, "delta": "x"}
    assert frames(passed.chunk(upstream_event)) == [upstream_event]  # passed on as sent
    assert passed.end("stop", (0, 0)) == b""  # its own response.completed ends it
