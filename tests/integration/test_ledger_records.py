"""What a record holds: costs by hand and from litellm's price map, prompt logging only when
the policy says so, no secrets, and no way to forge a line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests

from router.ledger import Entry
from router.ledger.jsonl import JSONLSink
from router.ledger.sqlite import SQLiteSink
from router.records import DecisionRecord
from tests.support.cascade import StartCascade, ledger_export, policy_yaml
from tests.support.processes import ServerProcess

SECRET_KEY = "sk-team-secret-0123456789abcdef"


def test_escalated_costs_and_savings_match_the_price_table(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    policy = policy_yaml(f"{llama_server.url}/v1", threshold=0.999).replace(
        "price: {input_per_1m: 0.01, output_per_1m: 0.02}",
        "price: {input_per_1m: 0.01, output_per_1m: 0.02, per_second: 0.0005}",
    )
    cascade = start_cascade(policy)
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=16,
            temperature=0,
        )
    record = cascade.record(raw.headers["x-request-id"])
    small, large = record["attempts"]
    small_cost = (
        small["prompt_tokens"] * 0.01 / 1e6
        + small["completion_tokens"] * 0.02 / 1e6
        + small["latency_ms"] / 1000 * 0.0005  # the local tier is also priced by time
    )
    large_cost = (large["prompt_tokens"] * 1.0 + large["completion_tokens"] * 3.0) / 1e6
    assert small["cost_usd"] == pytest.approx(small_cost, abs=1e-10)
    assert large["cost_usd"] == pytest.approx(large_cost, abs=1e-10)
    assert record["cost_usd"] == pytest.approx(small_cost + large_cost, abs=1e-10)
    # reference tier = the route's last: the served answer's tokens at its price
    assert record["counterfactual_cost_usd"] == pytest.approx(large_cost, abs=1e-10)
    assert record["saved_usd"] == pytest.approx(-small_cost, abs=1e-10)


def test_prices_from_litellms_map_for_a_known_openai_model(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    import litellm

    fake = start_fake_upstream()
    cascade = start_cascade(
        textwrap.dedent(f"""\
        version: 1
        tiers:
          mini: {{type: openai, api_base: "{fake.url}/v1", model: gpt-4o-mini,
                  price_from_litellm: true}}
        routes:
          auto: {{cascade: [{{tier: mini}}]}}
        """)
    )
    response = requests.post(
        f"{cascade.url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=30,
    )
    record = cascade.record(response.headers["x-request-id"])
    (attempt,) = record["attempts"]
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-mini",
        prompt_tokens=attempt["prompt_tokens"],
        completion_tokens=attempt["completion_tokens"],
        cache_read_input_tokens=attempt["cached_tokens"],  # the fake reports some cached
    )
    assert attempt["cached_tokens"] > 0
    assert attempt["prompt_tokens"] > 0 and attempt["completion_tokens"] > 0
    assert attempt["cost_usd"] == pytest.approx(prompt_cost + completion_cost, rel=1e-9)
    assert record["counterfactual_cost_usd"] == pytest.approx(attempt["cost_usd"])
    assert record["saved_usd"] == pytest.approx(0.0)


def passthrough(upstream: str, ledger_options: str = "") -> str:
    return textwrap.dedent(f"""\
        version: 1
        {ledger_options}
        tiers:
          large: {{type: openai, api_base: "{upstream}/v1", model: fake, api_key_env: UP_KEY}}
        routes:
          auto: {{cascade: [{{tier: large}}]}}
        """)


def hostile_request(url: str) -> requests.Response:
    return requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        json={
            "model": "auto",
            "user": 'mallory\n{"request_id": "forged"}\x1b[31m\r',
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"my key is {SECRET_KEY}; " + "x" * 500},
            ],
        },
        timeout=30,
    )


def test_prompts_are_kept_only_when_the_policy_says_redacted_and_capped(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    fake = start_fake_upstream()
    quiet = start_cascade(passthrough(fake.url))
    record = quiet.record(hostile_request(quiet.url).headers["x-request-id"])
    assert record["prompt"] is None  # off by default

    logged = start_cascade(
        passthrough(fake.url, "ledger: {log_prompts: true, max_prompt_chars: 80}")
    )
    record = logged.record(hostile_request(logged.url).headers["x-request-id"])
    assert record["prompt"].startswith("system: Be brief.\nuser: my key is [redacted]; xxx")
    assert len(record["prompt"]) == 80 and record["prompt_truncated"] is True
    assert SECRET_KEY not in record["prompt"]


def test_no_secret_and_no_forged_line_reaches_the_ledger(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fake = start_fake_upstream("--status", "401")  # the upstream echoes our key back in errors
    cascade = start_cascade(
        passthrough(fake.url, "ledger: {log_prompts: true}"),
        env={"UP_KEY": "sk-upstream-key-abcdef0123456789"},
    )
    response = hostile_request(cascade.url)
    assert response.status_code >= 400
    record = cascade.record(response.headers["x-request-id"])
    assert record["key_id"] and record["key_id"] not in SECRET_KEY
    assert record["user"] == 'mallory\n{"request_id": "forged"}\x1b[31m\r'  # kept verbatim...
    assert record["attempts"][0]["error"]
    out = tmp_path / "export.jsonl"
    ledger_export(cascade.ledger, "--out", str(out))
    exported = out.read_bytes()
    lines = exported.splitlines()
    assert len(lines) == len(cascade.records())  # ...but escaped: one record, one line
    assert all(json.loads(line)["request_id"] != "forged" for line in lines)
    assert b"\x1b" not in exported and b"\r" not in exported
    database = Path(cascade.ledger.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        stored = b"".join(body for (body,) in db.execute("SELECT body FROM records")).decode()
    for secret in (SECRET_KEY, "sk-upstream-key-abcdef0123456789"):
        assert secret not in stored and secret not in exported.decode()
        assert secret not in cascade.server.log()


def test_export_reads_any_sink_within_a_time_window(tmp_path: Path) -> None:
    entries = [
        Entry.of(
            DecisionRecord(
                request_id=f"r{day}",
                endpoint="/v1/completions",
                policy_version="v",
                ts=f"2026-11-{day:02d}T12:00:00.000Z",
            )
        )
        for day in (20, 21, 22, 23)
    ]

    async def fill() -> None:
        for sink in (SQLiteSink(tmp_path / "l.db"), JSONLSink(tmp_path / "l.jsonl")):
            await sink.write(entries)
            await sink.write(entries[1:2])  # a duplicate, as after a lost acknowledgement
            await sink.aclose()

    asyncio.run(fill())
    for url in (f"sqlite:///{tmp_path / 'l.db'}", f"jsonl:///{tmp_path / 'l.jsonl'}"):
        result = ledger_export(url, "--since", "2026-11-21", "--until", "2026-11-23T00:00Z")
        assert [json.loads(line)["request_id"] for line in result.stdout.splitlines()] == [
            "r21",
            "r22",
        ]
        assert b"exported 2 records" in result.stderr
    missing = ledger_export(f"sqlite:///{tmp_path / 'no.db'}", check=False)
    assert missing.returncode == 1 and b"no ledger at" in missing.stderr
