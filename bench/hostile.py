"""Benchmark (q): no client can stall the gateway or starve another team.

One `cascade serve`; team `hostile` uses a billing upstream (tests/support/billing_upstream.py,
one token a millisecond), team `canary` a fake upstream of its own (so what is measured is
the gateway, not a provider both would share). Two canaries run throughout: `GET /healthz`
every 50 ms, and a completion from team `canary` 25 ms after the last (`--every`; ~600 in
15 s, so that a p99 is not one sample). First unloaded, as long as the attack, then
while team `hostile` sends, together and in a loop: a 4,000-value draft-04 enum schema, a
backtracking `pattern`, a 1 MB body of 2,048 messages, 5,000 tools, JSON nested 100,000
deep, and 240 streams it holds open. Targets: `/healthz` never waits over 250 ms; the canary
completion's p99 under attack (from when the attacker's process began sending) within 2x
its unloaded p99.

With `--pin` (two or more CPUs) the gateway runs alone on CPU 0 and everything else on CPU 1,
the attacker and its provider there under SCHED_IDLE: they run only when the canaries and
their provider do not want the CPU (a niced task may keep it for a few milliseconds after a
canary wakes), as if they were other machines, so what is measured is what the gateway does
with its own CPU, not how a shared CPU is scheduled.

    python -m bench.hostile [--seconds 15] [--pin] [--offload BYTES] [--pass-budget S]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import threading
import time
from typing import Any

import requests

from bench.common import WORK, append_results
from router.records import iso_time
from tests.support.cascade import read_ledger
from tests.support.hostile import attack
from tests.support.keys import team_keys
from tests.support.processes import free_port, start, start_cascade, start_fake_upstream

KEYS = {"canary": "sk-canary-team", "hostile": "sk-hostile-team"}


def _canaries(
    url: str, stop: threading.Event, every: float
) -> tuple[list[float], list[tuple[float, float]]]:
    """/healthz waits, and (when asked, how long) of each canary completion (one asked
    `every` seconds after the last was answered)."""
    health: list[float] = []
    completions: list[tuple[float, float]] = []
    ask: dict[str, Any] = {
        "model": "canary",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    headers = {"Authorization": f"Bearer {KEYS['canary']}"}

    def poll() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                asked = time.perf_counter()
                session.get(f"{url}/healthz", timeout=10)
                health.append(time.perf_counter() - asked)
                time.sleep(0.05)

    def complete() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                asked, asked_at = time.perf_counter(), time.time()
                answer = session.post(
                    f"{url}/v1/chat/completions", json=ask, headers=headers, timeout=30
                )
                if answer.status_code == 200:
                    completions.append((asked_at, time.perf_counter() - asked))
                time.sleep(every)

    threads = [threading.Thread(target=poll), threading.Thread(target=complete)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join()
    return health, completions


def _idle(pid: int) -> None:
    """Run `pid` only when nothing else on its CPU wants to (SCHED_IDLE)."""
    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def _attacked(url: str, seconds: float, pin: bool) -> tuple[float, dict[int, int]]:
    """When the attack began (this process's imports done), and its answers by status."""
    if pin:
        _idle(0)  # behind the canaries and their provider on the CPU they share
    began = time.time()
    return began, asyncio.run(attack(f"{url}/v1/chat/completions", seconds, key=KEYS["hostile"]))


def _env(offload: int | None, pass_budget: float | None) -> dict[str, str]:
    env = {} if offload is None else {"CASCADE_OFFLOAD_BYTES": str(offload)}
    if pass_budget is not None:
        env["CASCADE_INTAKE_PASS_BUDGET_S"] = str(pass_budget)
    return env


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--every", type=float, default=0.025, help="seconds between canary completions"
    )
    parser.add_argument("--pin", action="store_true", help="the gateway alone on CPU 0")
    parser.add_argument(
        "--offload",
        type=int,
        default=None,
        help="CASCADE_OFFLOAD_BYTES for the gateway (0: no worker; default: the gateway's)",
    )
    parser.add_argument(
        "--pass-budget",
        type=float,
        default=None,
        help="CASCADE_INTAKE_PASS_BUDGET_S for the gateway (default: the gateway's)",
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    if args.pin:  # processes started from here on inherit the CPU they may run on
        os.sched_setaffinity(0, {1})
    port = free_port()
    upstream = start(
        ["-m", "tests.support.billing_upstream", "--port", str(port), "--name", "stalling"],
        port,
        "/v1/models",
        WORK / "hostile-upstream.log",
    )
    if args.pin:  # the attacker's provider, like the attacker, behind the canaries on CPU 1
        _idle(upstream.process.pid)
    # the canary's own provider: what is measured is the gateway, not a provider both share
    fast = start_fake_upstream(WORK / "hostile-fast.log")
    teams = team_keys(KEYS)
    policy = WORK / "hostile.yaml"
    policy.write_text(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: billed, timeout_s: 60,
          max_concurrency: 512, max_queue: 1024}}
  fast: {{type: openai, api_base: "{fast.url}/v1", model: fake}}
routes:
  remote: {{cascade: [{{tier: large}}]}}
  canary: {{cascade: [{{tier: fast}}]}}
teams:
{teams}
""")
    ledger = WORK / "hostile.db"
    ledger.unlink(missing_ok=True)
    if args.pin:
        os.sched_setaffinity(0, {0})
    server = start_cascade(
        policy,
        f"sqlite:///{ledger}",
        WORK / "hostile.log",
        env=_env(args.offload, args.pass_budget),
    )
    if args.pin:
        os.sched_setaffinity(0, {1})
    try:
        time.sleep(3)  # settled: its offload worker starts with it (~1 s of a CPU)
        stop = threading.Event()
        timer = threading.Timer(args.seconds, stop.set)  # as many unloaded samples
        timer.start()
        quiet_health, quiet = _canaries(server.url, stop, args.every)
        stop = threading.Event()
        found: dict[str, object] = {}

        def canaries() -> None:
            found["health"], found["completions"] = _canaries(server.url, stop, args.every)

        watcher = threading.Thread(target=canaries)
        watcher.start()
        # the attacker in its own process: the canaries' waits are the gateway's, not this
        # process's (its event loop and GIL)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            started, statuses = pool.apply(_attacked, (server.url, args.seconds, args.pin))
        stop.set()
        watcher.join()
    finally:
        server.stop()
        upstream.stop()
        fast.stop()
    gateway = [
        record["latency_ms"] / 1000
        for record in read_ledger(f"sqlite:///{ledger}")
        if record.get("team") == "canary" and record["ts"] >= iso_time(started)
    ]
    health: list[float] = found["health"]  # type: ignore[assignment]
    timed: list[tuple[float, float]] = found["completions"]  # type: ignore[assignment]
    loaded = [wait for at, wait in timed if at >= started]
    settled = [wait for at, wait in timed if at >= started + 1.0]
    rows = [
        [
            "unloaded",
            f"{max(quiet_health) * 1000:.0f}",
            f"{_p99([wait for _, wait in quiet]) * 1000:.1f}",
            "—",
            "—",
        ],
        [
            "under attack",
            f"{max(health) * 1000:.0f}",
            f"{_p99(loaded) * 1000:.1f}",
            f"{_p99(gateway) * 1000:.1f}",
            ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items())),
        ],
        ["under attack, after its first second", "—", f"{_p99(settled) * 1000:.1f}", "—", "—"],
    ]
    unloaded = _p99([wait for _, wait in quiet])
    ratio, settled_ratio = _p99(loaded) / unloaded, _p99(settled) / unloaded
    placement = (
        " (the gateway alone on CPU 0; canaries and providers on CPU 1, the attacker and its"
        " provider there under SCHED_IDLE)"
        if args.pin
        else " (every process on the same CPUs)"
    )
    append_results(
        "(q) Hostile tenant: a canary's waits while another team attacks",
        [
            "phase",
            "/healthz worst ms",
            "canary completion p99 ms (client)",
            "same, as its records say",
            "hostile answers",
        ],
        rows,
        notes=f"bench/hostile.py{' --pin' if args.pin else ''}"
        f"{'' if args.offload is None else f' --offload {args.offload}'}"
        f"{'' if args.pass_budget is None else f' --pass-budget {args.pass_budget:g}'}, "
        f"{args.seconds:g} s under "
        f"attack{placement}: the six hostile kinds in a "
        f"loop and 240 held streams from team hostile; canary completion p99 under attack / "
        f"unloaded = {ratio:.2f} (target <= 2), {settled_ratio:.2f} after the attack's first "
        "second (asked after it: its 240 streams open at once); /healthz worst target <= 250 ms; "
        f"{len(loaded)} canary completions under attack.",
    )
    print("\n".join(" | ".join(row) for row in rows), f"\nratio {ratio:.2f}")


if __name__ == "__main__":
    main()
