"""`cascade serve --workers 2` supervised: a worker killed with SIGKILL (as the OOM killer
would) is replaced — logged, and counted in /readyz and /metrics — and the server keeps
serving on two workers; SIGTERM to the parent stops them all."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.processes import ServerProcess
from tests.support.processes import start_cascade as start_cascade_process

ASK = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}


def worker_pids(url: str, tries: int = 200) -> set[int]:
    """The pids that answer /readyz (connections spread over the workers)."""
    pids = set()
    for _ in range(tries):
        with requests.Session() as fresh:  # a new connection each time
            pids.add(fresh.get(f"{url}/readyz", timeout=5).json()["pid"])
    return pids


def test_a_killed_worker_is_replaced_and_serving_goes_on(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    upstream = start_fake_upstream()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers: {{large: {{type: openai, api_base: "{upstream.url}/v1", model: m}}}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
""")
    server = start_cascade_process(
        policy, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "server.log", "--workers", "2"
    )
    try:
        deadline = time.monotonic() + 60  # the server is ready when one worker is
        while len(before := worker_pids(server.url, tries=40)) < 2:
            assert time.monotonic() < deadline, f"one worker never came up: {before}"
            time.sleep(0.2)
        victim = next(iter(before))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                after = worker_pids(server.url, tries=60)
            except requests.RequestException:
                after = set()
            if len(after) == 2 and victim not in after:
                break
            assert time.monotonic() < deadline, f"not replaced: {after}"
            time.sleep(0.2)
        replaced = next(iter(after - before))
        assert requests.post(f"{server.url}/v1/chat/completions", json=ASK, timeout=10).ok
        states = {}
        for _ in range(200):  # each worker says what it knows
            with requests.Session() as fresh:
                body = fresh.get(f"{server.url}/readyz", timeout=5).json()
            states[body["pid"]] = body["workers_replaced"]
            if len(states) == 2:
                break
        assert states[replaced] == 1
        assert '"worker_replaced"' in server.log() and f'"pid":{victim}' in server.log()
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    assert server.process.returncode == 0
    for pid in after:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
