"""No client can stall the gateway (a short version of bench/hostile.py): a canary polling
`/healthz` every 50 ms through `cascade serve` never waits more than 250 ms while other
clients send, together, a 4,000-value draft-04 enum schema, a backtracking `pattern`, a 1 MB
body of 2,048 messages, 5,000 tools, JSON nested past any parser's depth, and 240 streams
held open by one team."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import requests

from tests.support.hostile import attack
from tests.support.processes import ServerProcess, free_port, start
from tests.support.processes import start_cascade as start_cascade_process


def test_a_canary_is_answered_promptly_under_every_hostile_request(tmp_path: Path) -> None:
    port = free_port()
    upstream: ServerProcess = start(
        ["-m", "tests.support.billing_upstream", "--port", str(port), "--name", "stalling"],
        port,
        "/v1/models",
        tmp_path / "upstream.log",
    )
    (tmp_path / "policy.yaml").write_text(f"""
tiers:
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: billed
    timeout_s: 30
    max_concurrency: 512
    max_queue: 1024
routes:
  remote: {{cascade: [{{tier: large}}]}}
""")
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = start_cascade_process(tmp_path / "policy.yaml", ledger, tmp_path / "cascade.log")
    waits: list[float] = []
    done = threading.Event()

    def canary() -> None:
        with requests.Session() as session:
            while not done.is_set():
                asked = time.perf_counter()
                assert session.get(f"{server.url}/healthz", timeout=5).status_code == 200
                waits.append(time.perf_counter() - asked)
                time.sleep(0.05)

    watcher = threading.Thread(target=canary)
    try:
        watcher.start()
        statuses = asyncio.run(attack(f"{server.url}/v1/chat/completions", seconds=3.0))
    finally:
        done.set()
        watcher.join()
        server.stop()
        upstream.stop()
    print(f"canary: {len(waits)} polls, worst {max(waits) * 1000:.0f} ms; hostile: {statuses}")
    assert len(waits) > 20 and max(waits) <= 0.25
    # the schema, body, tools and depth limits refuse four kinds at once; the pattern is a
    # valid schema, served, its answer checked in linear time
    assert statuses[400] > statuses.get(200, 0) > 0
