"""A canary upstream key that matches no known key shape, echoed by a careless upstream in
several encodings: it appears in no response, log line, record or metric."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests

from tests.support.cascade import StartCascade, ledger_export
from tests.support.processes import ServerProcess

CANARY = "UPSTREAM-CANARY-KEY-42"
FORMS = (
    CANARY,
    quote(CANARY, safe=""),
    base64.b64encode(CANARY.encode()).decode().rstrip("="),
)


def test_a_canary_key_in_every_format_never_leaves(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    failing, healthy = start_fake_upstream("--status", "500"), start_fake_upstream()
    cascade = start_cascade(
        f"""
tiers:
  broken: {{type: openai, api_base: "{failing.url}/v1", model: fake, api_key_env: CANARY_ENV,
           retries: {{max: 0}}}}
  spare: {{type: openai, api_base: "{healthy.url}/v1", model: fake}}
routes:
  guarded: {{cascade: [{{tier: broken}}], fallbacks: {{broken: [spare]}}}}
""",
        env={"CANARY_ENV": CANARY, "CASCADE_LOG_LEVEL": "debug"},
    )
    seen: list[str] = []
    for model, stream in (("broken", False), ("broken", True), ("guarded", False)):
        response = requests.post(
            f"{cascade.url}/v1/chat/completions",
            json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
        seen.append(response.text + str(response.headers))
        cascade.record(response.headers["x-request-id"])  # flushed
    assert "injected failure 500" in seen[0]  # the upstream's error did reach the client...
    out = tmp_path / "export.jsonl"
    ledger_export(cascade.ledger, "--out", str(out))
    seen += [
        out.read_text(),
        cascade.server.log(),
        requests.get(f"{cascade.url}/metrics", timeout=10).text,
        requests.get(f"{cascade.url}/readyz", timeout=10).text,
    ]
    for text in seen:  # ...but not the key, in any of the forms it echoed
        for form in FORMS:
            assert form not in text
    assert "[redacted]" in seen[0]
