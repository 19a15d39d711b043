"""A client that leaves stops its work: the upstream sees its request closed, the local
model stops generating, no further tier is called, and the record says `client_gone` with
what was spent. Real processes: cascade, the fake upstream, the bundled model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess

StartFake = Callable[..., ServerProcess]
HI = [{"role": "user", "content": "Hi"}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


def seen(fake: ServerProcess) -> dict[str, Any]:
    return dict(requests.get(f"{fake.url}/_fault", timeout=10).json())


def leave_after(cascade: Cascade, seconds: float, **body: Any) -> str:
    """Send a request and hang up: after `seconds` of silence, or after a stream's first
    few events. Returns the client id it sent (the record keeps it)."""
    client_id = f"leaver-{time.monotonic_ns()}"
    try:
        with requests.post(
            f"{cascade.url}/v1/chat/completions",
            json=body,
            timeout=seconds,
            stream=True,
            headers={"x-client-request-id": client_id},
        ) as response:
            for number, _ in enumerate(response.iter_lines()):
                if number >= 6:
                    break
    except requests.exceptions.RequestException:
        pass
    return client_id


def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def record_of(cascade: Cascade, client_id: str) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        return [r for r in cascade.records() if r["client_request_id"] == client_id]

    until(lambda: bool(found()), 5, "its record")
    (record,) = found()
    return record


@pytest.fixture(scope="module")
def remote(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> tuple[Cascade, ServerProcess, ServerProcess]:
    first, second = start_fake_upstream("--delay-ms", "10000"), start_fake_upstream()
    cascade = start_cascade(f"""
tiers:
  first: {{type: openai, api_base: "{first.url}/v1", model: fake, timeout_s: 60}}
  second: {{type: openai, api_base: "{second.url}/v1", model: fake}}
routes:
  both:
    cascade:
      - {{tier: first, acceptance: {{threshold: 0.5}}}}
      - {{tier: second}}
  kept:
    cache: {{store: memory}}
    cascade:
      - {{tier: first, acceptance: {{threshold: 0.5}}}}
      - {{tier: second}}
    shadow: {{rate: 1.0, usd_per_day: 1.0, reference_tier: second}}
""")
    return cascade, first, second


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_upstream_sees_its_request_closed_and_no_further_tier_is_called(
    remote: tuple[Cascade, ServerProcess, ServerProcess], stream: bool
) -> None:
    cascade, first, second = remote
    before = seen(first)["closed_early"]
    started = time.monotonic()
    client_id = leave_after(cascade, 0.5, model="both", messages=HI, stream=stream)
    until(lambda: seen(first)["closed_early"] == before + 1, 3, "the upstream to see it closed")
    assert time.monotonic() - started < 2.5  # closed within about a second of leaving
    assert seen(second)["requests"] == 0  # the cascade went no further
    record = record_of(cascade, client_id)
    assert (record["status"], record["http_status"]) == ("client_gone", 499)
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("first", "client_gone")]
    assert record["attempts"][0]["latency_ms"] >= 400


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_client_that_leaves_a_cached_shadowed_route_leaves_no_entry_and_no_check(
    remote: tuple[Cascade, ServerProcess, ServerProcess], stream: bool
) -> None:
    """What the client never got is neither cached nor shadow-checked, and the server
    goes on serving."""
    cascade, _, second = remote
    body = {"model": "kept", "messages": HI, "temperature": 0, "stream": stream}
    before = seen(second)["requests"]
    client_id = leave_after(cascade, 0.5, **body)
    record = record_of(cascade, client_id)
    assert record["status"] == "client_gone" and record["cache"] == "miss"
    time.sleep(0.5)  # a check would have been offered as the request settled
    assert not [r for r in cascade.records() if r.get("shadow_of") == record["request_id"]]
    assert seen(second)["requests"] == before  # no shadow call to the reference either
    metrics = requests.get(f"{cascade.url}/metrics", timeout=10).text
    assert 'cascade_cache_memory{what="entries"} 0.0' in metrics
    again = requests.post(
        f"{cascade.url}/v1/chat/completions",
        json={"model": "second", "messages": HI, "max_tokens": 4},
        timeout=10,
    )
    assert again.status_code == 200


@pytest.fixture(scope="module")
def local(start_cascade: StartCascade) -> Cascade:
    return start_cascade("""
tiers:
  small: {type: llama_cpp, max_concurrency: 1}
routes:
  auto: {cascade: [{tier: small}]}
limits: {max_output_tokens: 2048}
""")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_local_model_stops_generating_when_its_client_leaves(
    local: Cascade, stream: bool
) -> None:
    # ~2,000 tokens take 20 s or more on 2 cores; the one context is free again at once.
    client_id = leave_after(
        local, 1.0, model="auto", messages=STORY, max_tokens=2000, stream=stream
    )
    gone = record_of(local, client_id)
    assert gone["status"] == "client_gone"
    (attempt,) = gone["attempts"]
    assert attempt["outcome"] == "client_gone"
    started = time.monotonic()
    quick = requests.post(
        f"{local.url}/v1/chat/completions",
        json={"model": "auto", "messages": HI, "max_tokens": 8},
        timeout=60,
    )
    assert quick.status_code == 200
    assert time.monotonic() - started < 8, "the abandoned generation kept the context busy"
