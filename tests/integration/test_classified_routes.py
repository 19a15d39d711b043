"""Routes with a pre-router and a learned acceptance model, served for real: the bundled
artifacts score inside `cascade serve`, the small tier is llama.cpp in-process and the large
tier is llama-cpp-python's own OpenAI server in another process."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

import classifiers
from tests.support.cascade import StartCascade
from tests.support.processes import ServerProcess

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl"
QUESTION = "What is the capital of France?"


def policy(large_api_base: str, *, router_threshold: float, accept_threshold: float) -> str:
    return f"""
version: 1
default_route: auto
tiers:
  small: {{type: llama_cpp, price: {{input_per_1m: 0.01, output_per_1m: 0.02}}}}
  large: {{type: openai, api_base: "{large_api_base}", model: smollm2-remote, timeout_s: 60,
          connect_timeout_s: 2, price: {{input_per_1m: 1.0, output_per_1m: 3.0}}}}
routes:
  auto:
    classifier: {{model: prerouter, threshold: {router_threshold}}}
    cascade:
      - tier: small
        acceptance: {{method: learned, model: acceptance, threshold: {accept_threshold}}}
      - tier: large
"""


def ask(url: str, content: str = QUESTION) -> tuple[dict[str, str], str]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": content}],
            max_tokens=24,
            temperature=0,
        )
    return dict(raw.headers), raw.parse().choices[0].message.content or ""


@pytest.fixture(scope="module")
def prerouter() -> classifiers.Router:
    return classifiers.load("prerouter")


def test_low_score_skips_the_small_tier(
    start_cascade: StartCascade, llama_server: ServerProcess, prerouter: classifiers.Router
) -> None:
    expected = prerouter.score(QUESTION)
    threshold = round(expected + 0.01, 6)
    cascade = start_cascade(
        policy(f"{llama_server.url}/v1", router_threshold=threshold, accept_threshold=0.0)
    )
    headers, text = ask(cascade.url)
    assert (headers["x-cascade-tier"], headers["x-cascade-escalations"]) == ("large", "0")
    assert "Paris" in text
    record = cascade.record(headers["x-request-id"])
    assert record["classifier"] == {
        "name": "prerouter",
        "version": prerouter.version,
        "score": round(expected, 6),
        "threshold": threshold,
        "skipped_first_step": True,
    }
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("large", "accepted")]
    metrics = requests.get(f"{cascade.url}/metrics", timeout=10).text
    assert 'cascade_classifier_skips_total{classifier="prerouter",route="auto"} 1.0' in metrics
    assert 'cascade_classifier_score_count{classifier="prerouter",route="auto"} 1.0' in metrics


def test_learned_acceptance_judges_the_small_answer(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    # The pre-router never skips (threshold 0); the acceptance model decides.
    keep = start_cascade(policy(f"{llama_server.url}/v1", router_threshold=0, accept_threshold=0))
    headers, _ = ask(keep.url)
    assert headers["x-cascade-tier"] == "small"
    (small,) = keep.record(headers["x-request-id"])["attempts"]
    assert small["outcome"] == "accepted"
    assert small["confidence"]["method"] == "learned"
    value = small["confidence"]["value"]
    assert 0.0 < value < 1.0

    # Same prompt and greedy decoding, so the same answer and score: just above it escalates.
    strict = start_cascade(
        policy(f"{llama_server.url}/v1", router_threshold=0, accept_threshold=value + 1e-6)
    )
    headers, text = ask(strict.url)
    assert (headers["x-cascade-tier"], headers["x-cascade-escalations"]) == ("large", "1")
    assert "Paris" in text
    record = strict.record(headers["x-request-id"])
    small, large = record["attempts"]
    assert (small["outcome"], large["outcome"]) == ("escalated", "accepted")
    assert small["confidence"]["value"] == value
    assert record["classifier"]["skipped_first_step"] is False


def test_default_policy_without_a_large_tier_still_answers_locally(
    start_cascade: StartCascade, prerouter: classifiers.Router
) -> None:
    """The shipped policy: a prompt the pre-router sends past the small tier finds `large`
    unconfigured, so the skipped small tier answers after all (judged, maybe degraded)."""
    text = (REPO / "policies/default.yaml").read_text()
    cascade = start_cascade(text, env={"CASCADE_LARGE_API_BASE": ""})
    headers, answer = ask(cascade.url)
    assert headers["x-cascade-tier"] == "small"
    assert answer
    record = cascade.record(headers["x-request-id"])
    assert record["classifier"]["skipped_first_step"] is True
    assert record["classifier"]["score"] == round(prerouter.score(QUESTION), 6)
    large, small = record["attempts"]
    assert (large["tier"], large["outcome"]) == ("large", "error")
    assert "not configured" in large["error"]
    assert small["tier"] == "small" and small["confidence"]["method"] == "learned"
    degraded = small["outcome"] == "degraded"
    assert headers["x-cascade-degraded"] == ("true" if degraded else "false")
    assert small["outcome"] in ("accepted", "degraded")


def test_calibrate_writes_a_threshold_the_server_reloads(
    start_cascade: StartCascade,
    start_fake_upstream: Callable[..., ServerProcess],
    prerouter: classifiers.Router,
) -> None:
    """The loop a platform team runs: calibrate a threshold into the policy file (a reviewed
    one-line change), and the running server routes by it without a restart; a policy that
    names a missing artifact is rejected and the last good one keeps serving."""
    fake = start_fake_upstream()
    text = policy(f"{fake.url}/v1", router_threshold=0.0, accept_threshold=0.0)
    cascade = start_cascade(
        text.replace("smollm2-remote", "fake"), {"CASCADE_POLICY_POLL_S": "0.1"}
    )
    path = cascade.server.log_path.parent / "policy.yaml"
    headers, _ = ask(cascade.url)
    assert cascade.record(headers["x-request-id"])["attempts"][0]["tier"] == "small"

    result = subprocess.run(
        [
            sys.executable, "-m", "router", "classify", "calibrate", "--model", "prerouter",
            "--labels", str(LABELS), "--held-out", "--target-strong-share", "0.5",
            "--policy", str(path), "--route", "auto", "--write",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    threshold = float(result.stdout.split()[1].rstrip(":"))
    assert f"+    classifier: {{model: prerouter, threshold: {threshold}}}" in result.stdout
    assert prerouter.score(QUESTION) < threshold  # so this question now skips the small tier
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    wait_for_version(cascade.url, version)
    headers, _ = ask(cascade.url)
    record = cascade.record(headers["x-request-id"])
    assert record["policy_version"] == version
    assert record["classifier"]["threshold"] == threshold
    assert [a["tier"] for a in record["attempts"]] == ["large"]

    # written whole, as an editor saves (a reload that saw the file half-written would be
    # rejected for that instead, and the next one for the artifact)
    broken = path.with_suffix(".new")
    broken.write_text(path.read_text().replace("model: prerouter", "model: gone.skops"))
    broken.replace(path)
    deadline = time.monotonic() + 20
    while (rejected := admin(cascade.url)["last_rejected"]) is None:
        assert time.monotonic() < deadline, "the broken policy was not rejected"
        time.sleep(0.05)
    assert "gone.skops: no such classifier artifact" in rejected["errors"][0]
    headers, _ = ask(cascade.url)
    assert headers["x-cascade-policy"] == version


def admin(url: str) -> dict[str, Any]:
    return dict(requests.get(f"{url}/admin/policy", timeout=10).json())


def wait_for_version(url: str, version: str) -> None:
    deadline = time.monotonic() + 20
    while admin(url)["version"] != version:
        assert time.monotonic() < deadline, f"the server did not load {version}"
        time.sleep(0.05)
