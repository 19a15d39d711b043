"""The completion handlers in-process over in-memory backends: headers, bodies, streams and
the decision record agree on every path (streamed and not, answered, degraded, failed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from router.backends.base import BackendError
from tests.support.app import CHAT, POLICY, Serve, record_of, sse
from tests.support.cascade import read_ledger
from tests.support.fakes import UNSURE, FakeBackend, Script


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


CACHED = POLICY.replace("  auto:\n", "  auto:\n    cache: {store: memory}\n")
ASKED = {**CHAT, "temperature": 0}


def _text(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["content"])


@pytest.mark.parametrize("first", [False, True], ids=["made-whole", "made-streamed"])
@pytest.mark.parametrize("second", [False, True], ids=["hit-whole", "hit-streamed"])
async def test_a_repeated_request_is_answered_from_the_cache_streamed_or_not(
    serve: Serve, first: bool, second: bool
) -> None:
    """An escalated answer (live-streamed or whole) is kept and served again either way:
    no tier is called, headers and record say hit, and the record's cost is 0 with what the
    answer cost when it was made."""
    small = FakeBackend("small", [Script("maybe five", UNSURE)], local=True)
    large = FakeBackend("large", [Script("the answer is four", None)])
    client, ledger = await serve(CACHED, small=small, large=large)
    made = await client.post("/v1/chat/completions", json={**ASKED, "stream": first})
    made_text = (await sse(made))[0] if first else _text(await made.json())
    assert made.headers["x-cascade-cache"] == "miss"
    served = await client.post("/v1/chat/completions", json={**ASKED, "stream": second})
    assert served.status == 200
    text = (await sse(served))[0] if second else _text(await served.json())
    assert text == made_text == "the answer is four"
    assert (small.calls, large.calls) == (1, 1)
    headers = served.headers
    assert headers["x-cascade-cache"] == "hit"
    assert (headers["x-cascade-tier"], headers["x-cascade-escalations"]) == ("large", "0")
    ids = made.headers["x-request-id"], headers["x-request-id"]
    await client.close()
    miss, hit = (record_of(ledger, request_id) for request_id in ids)
    assert (miss["cache"], miss["cache_hit"], hit["cache"], hit["cache_hit"]) == (
        "miss",
        False,
        "hit",
        True,
    )
    assert miss["cost_usd"] > 0 and hit["cost_usd"] == 0 and hit["attempts"] == []
    assert hit["cache_saved_usd"] == miss["cost_usd"]
    assert hit["saved_usd"] == hit["counterfactual_cost_usd"] == miss["counterfactual_cost_usd"]
    assert (hit["final_tier"], hit["status"], hit["stream"]) == ("large", "ok", second)


@pytest.mark.parametrize(
    ("extra", "headers", "status"),
    [
        ({"temperature": 0.7}, {}, "skip"),  # sampled: not meant to repeat
        ({}, {}, "skip"),  # no temperature: the model's default, 1
        ({"temperature": 0}, {"Cache-Control": "no-cache"}, "bypass"),
        ({"seed": 7, "temperature": 1}, {"Cache-Control": "no-store, max-age=0"}, "bypass"),
    ],
)
async def test_requests_the_cache_must_not_answer_reach_the_tiers(
    serve: Serve, extra: dict[str, Any], headers: dict[str, str], status: str
) -> None:
    large = FakeBackend("large", [Script("four", None)])
    client, _ = await serve(
        CACHED.replace("{tier: small, acceptance: {threshold: 0.5}}\n      - ", ""), large=large
    )
    for _ in range(2):
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, **extra}, headers=headers
        )
        assert response.status == 200 and response.headers["x-cascade-cache"] == status
    assert large.calls == 2


async def test_no_cache_refreshes_the_entry_and_no_store_leaves_none(serve: Serve) -> None:
    large = FakeBackend("large", [Script("first", None), Script("second", None)])
    client, _ = await serve(
        CACHED.replace("{tier: small, acceptance: {threshold: 0.5}}\n      - ", ""), large=large
    )
    url = "/v1/chat/completions"
    await client.post(url, json=ASKED, headers={"Cache-Control": "no-store"})
    fresh = await client.post(url, json=ASKED, headers={"Cache-Control": "no-cache"})
    assert _text(await fresh.json()) == "second"  # nothing was stored by no-store
    again = await client.post(url, json=ASKED)
    assert again.headers["x-cascade-cache"] == "hit" and _text(await again.json()) == "second"
    assert large.calls == 2


async def test_a_degraded_answer_is_not_cached(serve: Serve) -> None:
    small = FakeBackend("small", [Script("maybe five", UNSURE)], local=True)
    client, _ = await serve(CACHED, small=small)  # large not configured: degraded
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=ASKED)
        assert response.headers["x-cascade-cache"] == "miss"
        assert response.headers["x-cascade-degraded"] == "true"
    assert small.calls == 2


SHADOWED = POLICY.replace(
    "      - {tier: large}\n",
    "      - {tier: large}\n    shadow: {rate: 1.0, usd_per_day: 1.0}\n",
)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("log_prompts", [False, True])
async def test_an_accepted_local_answer_is_shadow_checked_off_the_request_path(
    serve: Serve, stream: bool, log_prompts: bool
) -> None:
    policy = SHADOWED + ("ledger: {log_prompts: true}\n" if log_prompts else "")
    small = FakeBackend("small", [Script("four")], local=True)  # confident: accepted
    large = FakeBackend("large", [Script("The answer is four.", None)])
    client, ledger = await serve(policy, small=small, large=large)
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    text = (await sse(response))[0] if stream else _text(await response.json())
    assert text == "four" and response.headers["x-cascade-tier"] == "small"
    request_id = response.headers["x-request-id"]
    for _ in range(200):  # the check runs after the answer
        if large.calls:
            break
        await asyncio.sleep(0.005)
    await client.close()
    (check,) = [r for r in read_ledger(ledger) if r.get("kind") == "shadow"]
    assert check["shadow_of"] == request_id and check["verdict"] == "agree"
    assert (check["local_tier"], check["reference_tier"]) == ("small", "large")
    assert check["cost_usd"] > 0 and check["local_confidence"] > 0.5
    assert set(check["features"]) == {"prompt", "acceptance"}
    served = record_of(ledger, request_id)
    assert served["cost_usd"] == 0  # the check is not the request's cost
    if log_prompts:
        assert "What is 2 + 2?" in check["prompt"] and check["prompt"] == served["prompt"]
    else:
        assert check["prompt"] is None and "2 + 2" not in json.dumps(check)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_escalated_answer_is_checked_against_the_one_served_at_no_cost(
    serve: Serve, stream: bool
) -> None:
    """The rejected local answer is judged against the remote answer the client got
    (streamed live too): no tier is called again."""
    small = FakeBackend("small", [Script("five", UNSURE)], local=True)
    large = FakeBackend("large", [Script("The answer is four.", None)])
    client, ledger = await serve(SHADOWED, small=small, large=large)
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    if stream:
        await sse(response)
    assert response.headers["x-cascade-tier"] == "large"
    request_id = response.headers["x-request-id"]
    await asyncio.sleep(0.05)
    await client.close()
    assert (small.calls, large.calls) == (1, 1)
    (check,) = [r for r in read_ledger(ledger) if r.get("kind") == "shadow"]
    assert check["shadow_of"] == request_id and check["local_outcome"] == "escalated"
    assert check["verdict"] == "disagree" and check["cost_usd"] == 0
    assert (check["local_tier"], check["reference_tier"]) == ("small", "large")
    assert 0 < check["local_confidence"] < 0.5  # the rejected answer's own confidence


PREROUTED = POLICY.replace(
    "  auto:\n",
    "  auto:\n    classifier: {model: prerouter, threshold: 1.0}\n"
    "    shadow: {rate: 0.0, prerouter_rate: 1.0, usd_per_day: 1.0}\n",
)


@pytest.mark.parametrize("busy", [False, True])
async def test_a_request_the_prerouter_sent_past_the_local_tier_is_answered_locally_after(
    serve: Serve, busy: bool
) -> None:
    """Labels for the pre-router: the local tier answers in the background when it is idle,
    never when clients are waiting for it."""
    small = FakeBackend("small", [Script("four")], local=True, queue_depth=1 if busy else 0)
    large = FakeBackend("large", [Script("The answer is four.", None)])
    client, ledger = await serve(PREROUTED, small=small, large=large)
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.headers["x-cascade-tier"] == "large"
    await asyncio.sleep(0.05)
    await client.close()
    checks = [r for r in read_ledger(ledger) if r.get("kind") == "shadow"]
    if busy:
        assert small.calls == 0 and checks == []
        return
    (check,) = checks
    assert small.calls == 1 and large.calls == 1
    assert (check["local_outcome"], check["verdict"]) == ("skipped", "agree")
    assert check["prerouter_score"] is not None and check["prerouter_score"] < 1.0
    assert set(check["features"]) == {"prompt", "acceptance"}


AUTOTUNED = POLICY.replace(
    "      - {tier: large}\n",
    "      - {tier: large}\n"
    "    shadow:\n"
    "      rate: 1.0\n"
    "      usd_per_day: 1.0\n"
    "      target_quality: 0.9\n"
    "      autotune: {min_threshold: 0.05, max_threshold: 0.9, min_checks: 20, window: 20,"
    " every_checks: 20, max_step: 0.5}\n",
)


@pytest.mark.parametrize("stream", [False, True])
async def test_autotune_lowers_the_threshold_the_checks_justify_and_records_it(
    serve: Serve, stream: bool
) -> None:
    """20 confident local answers the reference agrees with: the threshold drops from the
    policy's 0.5 to the lowest bound allowed (one step of 0.45), so an answer at 0.08 that
    the policy's threshold would have escalated is now served locally; the change is a
    ledger record with the policy version, in /admin/policy and /metrics."""
    small = FakeBackend("small", [Script("four")] * 20 + [Script("five", UNSURE)], local=True)
    large = FakeBackend("large", [Script("The answer is four.", None)])
    client, ledger = await serve(AUTOTUNED, small=small, large=large)
    for _ in range(20):
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.headers["x-cascade-tier"] == "small"
    tuned: list[dict[str, Any]] = []
    for _ in range(400):  # the checks run after the answers
        tuned = (await (await client.get("/admin/policy")).json())["tuned"]
        if tuned:
            break
        await asyncio.sleep(0.005)
    assert tuned == [{"route": "auto", "tier": "small", "threshold": 0.05, "policy_threshold": 0.5}]
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    text = (await sse(response))[0] if stream else _text(await response.json())
    assert text == "five" and response.headers["x-cascade-tier"] == "small"
    request_id = response.headers["x-request-id"]
    metrics = await (await client.get("/metrics")).text()
    assert 'cascade_acceptance_threshold{route="auto",tier="small"} 0.05' in metrics
    await asyncio.sleep(0.05)
    await client.close()
    (attempt,) = record_of(ledger, request_id)["attempts"]
    assert attempt["outcome"] == "accepted" and attempt["confidence"]["threshold"] == 0.05
    (change,) = [r for r in read_ledger(ledger) if r.get("kind") == "tune"]
    assert (change["route"], change["tier"], change["method"]) == ("auto", "small", "mean_prob")
    assert (change["threshold_from"], change["threshold_to"], change["wanted"]) == (0.5, 0.05, 0.0)
    assert change["checks"] == 20 and change["agreement"] == 1.0
    assert change["policy_version"] == record_of(ledger, request_id)["policy_version"]


FEEDBACK_TUNED = POLICY.replace(
    "      - {tier: large}\n",
    "      - {tier: large}\n"
    "    shadow:\n"
    "      rate: 0.0\n"
    "      usd_per_day: 1.0\n"
    "      target_quality: 0.9\n"
    "      autotune: {min_threshold: 0.05, max_threshold: 0.99, min_checks: 20, window: 20,"
    " every_checks: 20, max_step: 0.3, feedback: true}\n",
)


async def test_autotune_takes_the_applications_feedback_when_the_route_asks(
    serve: Serve,
) -> None:
    """No shadow checks at all (rate 0): 20 confident local answers the application calls
    bad raise the threshold by one step (0.5 -> 0.8) — feedback alone, with
    `autotune.feedback`; a remote answer's feedback is stored but not tuned on."""
    small = FakeBackend("small", [Script("four")] * 20 + [Script("x", UNSURE)], local=True)
    large = FakeBackend("large", [Script("The answer is four.", None)])
    client, ledger = await serve(FEEDBACK_TUNED, small=small, large=large)
    for _ in range(20):
        response = await client.post("/v1/chat/completions", json=CHAT)
        assert response.headers["x-cascade-tier"] == "small"
        said = await client.post(
            "/v1/feedback",
            json={"request_id": response.headers["x-request-id"], "label": "thumbs_down"},
        )
        assert said.status == 200 and (await said.json())["autotune"] is True
    tuned = (await (await client.get("/admin/policy")).json())["tuned"]
    assert tuned == [{"route": "auto", "tier": "small", "threshold": 0.8, "policy_threshold": 0.5}]
    remote = await client.post("/v1/chat/completions", json=CHAT)  # UNSURE: escalated
    assert remote.headers["x-cascade-tier"] == "large"
    said = await client.post(
        "/v1/feedback", json={"request_id": remote.headers["x-request-id"], "label": "bad"}
    )
    assert said.status == 200 and "autotune" not in await said.json()
    await asyncio.sleep(0.05)
    await client.close()
    (change,) = [r for r in read_ledger(ledger) if r.get("kind") == "tune"]
    assert (change["threshold_from"], change["threshold_to"]) == (0.5, 0.8)
    assert change["checks"] == 20 and change["agreement"] == 0.0
