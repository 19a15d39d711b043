"""Shadow checks through a real `cascade serve`: the bundled model answers in-process and
is accepted, the same requests go to llama.cpp's own server (the reference tier) off the
request path, the verdicts land in the ledger linked to their requests, and `cascade audit`
reports the local answers' agreement with its interval."""

from __future__ import annotations

import time

import openai

from tests.support.cascade import Cascade, StartCascade, audit_report, policy_yaml
from tests.support.processes import ServerProcess

QUESTIONS = ["What is the capital of France?", "What is 2 + 2?", "Name a primary colour."]


def test_accepted_local_answers_are_checked_and_audited(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    policy = policy_yaml(f"{llama_server.url}/v1", threshold=0.0).replace(
        "      - tier: large\n",
        "      - tier: large\n"
        "    shadow: {rate: 1.0, usd_per_day: 1.0, judge: normalized, target_quality: 0.99}\n",
    )
    cascade: Cascade = start_cascade(policy)
    served = []
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x", max_retries=0) as client:
        for question in QUESTIONS:
            raw = client.chat.completions.with_raw_response.create(
                model="auto",
                messages=[{"role": "user", "content": question}],
                max_tokens=12,
                temperature=0,
            )
            assert raw.headers["x-cascade-tier"] == "small"
            served.append(raw.headers["x-request-id"])
    deadline = time.monotonic() + 60
    while len(checks := [r for r in cascade.records() if r.get("kind") == "shadow"]) < 3:
        assert time.monotonic() < deadline, f"{len(checks)} shadow checks recorded"
        time.sleep(0.2)
    assert sorted(check["shadow_of"] for check in checks) == sorted(served)
    assert {check["verdict"] for check in checks} <= {"agree", "disagree", "inconclusive"}
    assert all(check["reference_model"] == "smollm2-remote" for check in checks)
    assert all(check["prompt"] is None for check in checks)  # log_prompts is off
    report = audit_report(cascade.ledger, "route")
    (group,) = report["groups"]
    quality = group["local_quality"]
    agreed = sum(check["verdict"] == "agree" for check in checks)
    judged = sum(check["verdict"] in ("agree", "disagree") for check in checks)
    assert (quality["checks"], quality["agree"]) == (judged, agreed)
    assert group["requests"] == 3 and quality["target"] == 0.99
    if judged:
        low, high = quality["interval_95"]
        assert low <= quality["estimate"] <= high
        assert quality["below_target"] == (agreed / judged < 0.99)
