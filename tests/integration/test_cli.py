"""The `cascade` command as a user runs it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from router.ledger import open_sink, parse_ledger_url
from router.ledger.base import Entry
from tests.support.cascade import StartCascade, policy_yaml
from tests.support.processes import start_cascade as start_cascade_process

REPO = Path(__file__).resolve().parents[2]


def cascade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def say_hi(url: str, max_tokens: int) -> requests.Response:
    return requests.post(
        f"{url}/v1/chat/completions",
        timeout=60,
        json={
            "model": "auto",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )


def test_validate_every_shipped_policy() -> None:
    files = sorted(str(p) for p in (REPO / "policies").rglob("*.yaml"))
    result = cascade("policy", "validate", *files)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(": ok (version ") == len(files)


def test_validate_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        policy_yaml()
        .replace("tier: large", "tier: larg")
        .replace("n_ctx: 2048", "n_ctx: 2048\n    colour: blue")
    )
    result = cascade("policy", "validate", str(bad))
    assert result.returncode == 1
    assert "colour" in result.stdout
    assert "unknown tier 'larg'" in result.stdout or "larg" in result.stdout


def test_schema_is_json_schema_of_the_policy() -> None:
    result = cascade("policy", "schema")
    schema = json.loads(result.stdout)
    assert {"tiers", "routes", "limits"} <= set(schema["properties"])


def test_serve_refuses_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: {}\nroutes: {}\n")
    result = cascade("serve", "--policy", str(bad), "--port", "1")
    assert result.returncode == 1
    assert "tiers" in result.stderr


def test_sigterm_flushes_pending_records(start_cascade: StartCascade) -> None:
    server = start_cascade(policy_yaml(threshold=0.0))
    ids = []
    for _ in range(5):
        response = say_hi(server.url, 2)
        ids.append(response.headers["x-request-id"])
    server.server.stop()  # SIGTERM right after the last answer: records must still land
    assert server.server.process.returncode == 0
    assert {r["request_id"] for r in server.records()} >= set(ids)


def test_workers_share_the_port_and_reload_on_sighup(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml(threshold=0.0))
    server = start_cascade_process(
        policy,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tmp_path / "server.log",
        "--workers",
        "2",
        env={"CASCADE_POLICY_POLL_S": "600"},  # only SIGHUP reloads here
    )
    try:

        def versions_by_worker() -> dict[str, str]:
            seen: dict[str, str] = {}
            deadline = time.monotonic() + 60
            while len(seen) < 2 and time.monotonic() < deadline:
                ready = requests.get(f"{server.url}/readyz", timeout=10).json()
                seen[ready["pid"]] = ready["policy"]  # which worker, on which policy
            return seen

        before = versions_by_worker()
        assert len(before) == 2
        assert len(set(before.values())) == 1
        policy.write_text(policy_yaml(threshold=0.1))
        expected = hashlib.sha256(policy.read_bytes()).hexdigest()[:12]
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while set(versions_by_worker().values()) != {expected}:
            assert time.monotonic() < deadline, "not every worker reloaded"
            time.sleep(0.1)
        assert server.process.poll() is None  # the parent survived SIGHUP
    finally:
        server.stop()
    assert server.process.returncode == 0


@pytest.mark.parametrize("scheme", ["sqlite", "jsonl"])
def test_ledger_show_prints_one_record(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}:///{tmp_path / f'ledger.{scheme}'}"
    sink = open_sink(parse_ledger_url(url))
    records = [
        {"request_id": f"req-{i}", "ts": f"2026-12-05T10:00:0{i}.000Z", "team": "t", "cost_usd": i}
        for i in range(3)
    ]

    async def write() -> None:
        entries = [
            Entry(r["request_id"], r["ts"], r["team"], json.dumps(r).encode())  # type: ignore[arg-type]
            for r in records
        ]
        await sink.write(entries)
        await sink.aclose()

    asyncio.run(write())
    show = [sys.executable, "-m", "router", "ledger", "show"]
    found = subprocess.run(
        [*show, "req-1", "--ledger", url, "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(found.stdout) == records[1]
    told = subprocess.run(
        [*show, "req-1", "--ledger", url], capture_output=True, text=True, check=True
    )
    assert told.stdout.startswith("request req-1 at 2026-12-05T10:00:01.000Z")
    assert "team t" in told.stdout and "cost $1.00" in told.stdout
    missing = subprocess.run(
        [*show, "req-9", "--ledger", url], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "no record 'req-9'" in missing.stderr


def test_validate_checks_the_model_file_unless_offline(tmp_path: Path) -> None:
    policy = tmp_path / "local.yaml"
    policy.write_text(
        "tiers: {small: {type: llama_cpp, model_path: /nope.gguf}}\n"
        "routes: {auto: {cascade: [{tier: small}]}}\n"
    )
    validate = [sys.executable, "-m", "router", "policy", "validate", str(policy)]
    missing = subprocess.run(validate, capture_output=True, text=True, check=False, timeout=60)
    assert missing.returncode == 1
    assert "tiers.small.model_path: no such file: /nope.gguf" in missing.stdout
    offline = subprocess.run(
        [*validate, "--offline"], capture_output=True, text=True, check=False, timeout=60
    )
    assert offline.returncode == 0 and ": ok (version" in offline.stdout
