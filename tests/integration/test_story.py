"""An answer explains itself, whole and streamed: `x-cascade-reason` on the answer equals its
record's `reason`, and `cascade ledger show` (and `tail`) tell the record's story — the route,
why, each tier tried — through a real `cascade serve` with the bundled model as the local
tier and an OpenAI-compatible upstream as the large one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import openai
import pytest

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess

ASK = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def cascade(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> Cascade:
    upstream = start_fake_upstream()
    return start_cascade(f"""
tiers:
  small: {{type: llama_cpp}}
  large: {{type: openai, api_base: "{upstream.url}/v1", model: capable-model,
          price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}
routes:
  auto:
    cascade: [{{tier: small, acceptance: {{threshold: 0.999}}}}, {{tier: large}}]
""")


def _cli(cascade: Cascade, *args: str) -> str:
    found = subprocess.run(
        [sys.executable, "-m", "router", "ledger", *args, "--ledger", cascade.ledger],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return found.stdout


@pytest.mark.parametrize("stream", [False, True])
def test_an_escalated_answer_says_why_and_its_record_tells_the_story(
    cascade: Cascade, stream: bool
) -> None:
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ASK, max_tokens=8, temperature=0, stream=stream
        )
        answer = raw.parse()
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices)  # type: ignore[union-attr]
    request_id, reason = raw.headers["x-request-id"], raw.headers["x-cascade-reason"]
    assert reason.startswith("low_confidence")  # the small tier's answer, below 0.999
    record = cascade.record(request_id)
    # the header is sent before a live stream runs; the record knows how it ended
    ended = reason.replace("; live:large", "; accepted:large")
    assert record["reason"] == ended and record["stream"] is stream
    assert reason.endswith("; live:large" if stream else "; accepted:large")
    told = _cli(cascade, "show", request_id)
    assert told.startswith(f"request {request_id} at ")
    assert f"why: {ended}" in told and "route auto" in told
    assert "1. small (local): escalated" in told and "2. large (capable-model): answered" in told
    assert ("streamed" in told) is stream
    tail = _cli(cascade, "tail", "--route", "auto", "--status", "ok", "-n", "50")
    assert any(
        line.split()[1] == request_id and "small:esc>large:acc" in line
        for line in tail.splitlines()
    )
    assert _cli(cascade, "tail", "--team", "nobody") == ""
