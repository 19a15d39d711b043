"""The provider faults every gateway must survive, as the fake upstream injects them
(tests/support/fake_upstream.py), and what a client gets from each: the fault-matrix test
(tests/integration/test_faults.py) and bench/failover.py drive the same table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

ANSWER = "Hello from the fake upstream."  # the fake's answer, whole
ERROR_EVENT = "error event"  # a stream that broke after text: an error event, never a stop


@dataclass(frozen=True)
class Fault:
    """A provider's misbehaviour, and what the client of a route with no fallback gets, whole
    and streamed: the answer, a status, or (a stream that broke after text) an error event.
    Behind a healthy fallback the client gets the whole, exact answer, and the primary's
    attempt the outcome given (accepted: the primary answered after all)."""

    faults: dict[str, Any]
    alone_whole: int | str
    alone_streamed: int | str
    primary: str


def fault_matrix(late_ms: float) -> dict[str, Fault]:
    """Every fault; `late_ms`: how late a late first token comes (past the tier's limit). A
    hung answer and a stalled stream go silent for an hour."""
    return {
        "429 with a long Retry-After": Fault({"status": 429, "retry_after": 7}, 429, 429, "error"),
        "429 without Retry-After": Fault({"status": 429}, 429, 429, "error"),
        "500": Fault({"status": 500}, 502, 502, "error"),
        "503 persistent": Fault({"status": 503}, 502, 502, "error"),
        "reset before headers": Fault({"reset_early": True}, 503, 503, "error"),
        "no response": Fault({"delay_ms": 3_600_000}, 504, 504, "timeout"),
        "first token late": Fault({"first_byte_ms": late_ms}, ANSWER, 504, "timeout"),
        "non-SSE body": Fault({"html": True}, 502, 502, "error"),
        "cut before any event": Fault({"end_after": 0}, ANSWER, 502, "error"),
        "cut mid-answer": Fault({"end_after": 2}, ANSWER, ERROR_EVENT, "error"),
        "reset mid-answer": Fault({"drop_after": 2}, ANSWER, ERROR_EVENT, "error"),
        "stalled mid-answer": Fault({"stall_after": 2}, ANSWER, ERROR_EVENT, "timeout"),
        "one malformed event": Fault({"malformed_at": 2}, ANSWER, ANSWER, "accepted"),
        "no [DONE]": Fault({"no_done": True}, ANSWER, ANSWER, "accepted"),
        "context_length_exceeded": Fault({"context_length": True}, 400, 400, "error"),
        "content-policy 400": Fault({"content_filter": True}, 400, 400, "error"),
    }


def set_faults(url: str, **faults: Any) -> dict[str, Any]:
    """Switch the fake upstream at `url` to these faults (none: healthy)."""
    response = requests.post(f"{url}/_fault", json=faults, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def seen(url: str) -> dict[str, Any]:
    """The fake upstream's faults and counters (requests, closed early, recent bodies)."""
    return dict(requests.get(f"{url}/_fault", timeout=10).json())


def ask(
    url: str, model: str, *, stream: bool, timeout: float = 120
) -> tuple[int, dict[str, str], str]:
    """(status, headers, the answer's text or the error body) as a client sees them; a
    stream's error event as `error event: <message>`."""
    response = requests.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=timeout,
        stream=stream,
    )
    if response.status_code != 200:
        return response.status_code, dict(response.headers), response.text
    if not stream:
        message = response.json()["choices"][0]["message"]["content"]
        return 200, dict(response.headers), message
    text = ""
    for line in response.iter_lines():
        if line.startswith(b"data: {"):
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return 200, dict(response.headers), f"{ERROR_EVENT}: {chunk['error']['message']}"
            for choice in chunk.get("choices") or ():
                text += choice["delta"].get("content") or ""
    return 200, dict(response.headers), text
