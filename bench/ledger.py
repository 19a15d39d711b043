"""Benchmark (d): what the ledger costs on pass-through, and what SIGKILL loses.

1. Throughput: the same cascade pass-through (fake upstream, wrk, one process) with
   CASCADE_LEDGER=none (records discarded) and with each sink: sqlite (the default), redis,
   jsonl. The rounds alternate the configurations (A B C D, A B C D, ...) so drift on this
   shared machine hits them alike; the ratio to `none` is the ledger's cost. Target ≤ 5%.
2. SIGKILL: clients (tests/load.py) post steadily against a sqlite ledger; the server is
   killed with SIGKILL; records the clients received but the ledger lacks are lost. Several
   trials; reports how many and how long before the kill they were answered.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

from bench.common import WORK, append_results, wrk
from tests.support.cascade import read_ledger
from tests.support.load import Load
from tests.support.processes import (
    ServerProcess,
    start_cascade,
    start_fake_upstream,
)
from tests.support.redis_server import RedisServer


def policy(upstream: str) -> Path:
    path = WORK / "ledger.yaml"
    path.write_text(
        f"""
version: 1
tiers:
  large: {{type: openai, api_base: "{upstream}/v1", model: fake, max_concurrency: 1024,
          price: {{input_per_1m: 0.15, output_per_1m: 0.6}}}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
"""
    )
    return path


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` (threads it starts later inherit the main thread's mask)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (the sqlite writer included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server: ServerProcess, connections: int, seconds: int) -> tuple[float, float]:
    """(RPS, the server's CPU µs per request) of one wrk run on the pass-through route."""
    before = cpu_seconds(server.process.pid)
    result = wrk(
        f"{server.url}/v1/chat/completions", "auto", connections=connections, seconds=seconds
    )
    used = cpu_seconds(server.process.pid) - before
    assert result.errors == 0, result
    return result.rps, used / (result.rps * seconds) * 1e6


def throughput(upstream: ServerProcess, rounds: int, seconds: int, connections: int) -> None:
    redis = RedisServer(WORK / "ledger-redis")
    redis.start()
    ledgers = {
        "none (records discarded)": "none",
        "sqlite (default)": f"sqlite:///{WORK / 'bench-ledger.db'}",
        "redis stream": redis.url,
        "jsonl": f"jsonl:///{WORK / 'bench-ledger.jsonl'}",
    }
    for leftover in (WORK / "bench-ledger.db", WORK / "bench-ledger.jsonl"):
        leftover.unlink(missing_ok=True)
    servers = {
        name: start_cascade(policy(upstream.url), url, WORK / f"ledger-{i}.log")
        for i, (name, url) in enumerate(ledgers.items())
    }
    for server in servers.values():
        pin(server.process.pid, {0})  # cascade on core 0; wrk, upstream, redis on core 1
    rps: dict[str, list[float]] = {name: [] for name in servers}
    cpu_us: dict[str, list[float]] = {name: [] for name in servers}  # CPU µs per request
    names = list(servers)
    try:
        for server in servers.values():
            wrk(f"{server.url}/v1/chat/completions", "auto", connections=4, seconds=2)
        for round_ in range(rounds):
            for name in names[round_ % 4 :] + names[: round_ % 4]:  # each sink leads in turn
                served, cpu = load(servers[name], connections, seconds)
                rps[name].append(served)
                cpu_us[name].append(cpu)
                print(name, f"{served:.0f} RPS, {cpu:.0f} µs CPU", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        redis.stop()
    none = "none (records discarded)"
    base, base_cpu = statistics.median(rps[none]), statistics.median(cpu_us[none])
    rows = []
    for name, values in rps.items():
        median, cpu = statistics.median(values), statistics.median(cpu_us[name])
        cost = "—" if ledgers[name] == "none" else f"**{1 - median / base:.1%}**"
        cpu_cost = "—" if ledgers[name] == "none" else f"**{cpu / base_cpu - 1:.1%}**"
        rows.append(
            [
                name,
                " / ".join(f"{v:,.0f}" for v in values),
                f"{median:,.0f}",
                cost,
                " / ".join(f"{v:.0f}" for v in cpu_us[name]),
                cpu_cost,
            ]
        )
    append_results(
        "(d) Ledger cost on pass-through throughput",
        [
            "CASCADE_LEDGER",
            f"RPS per round (c={connections}, {seconds}s)",
            "median",
            "cost vs none",
            "cascade CPU µs per request, per round",
            "CPU cost vs none (medians)",
        ],
        rows,
        notes="One cascade process per sink pinned to core 0 (wrk, the fake upstream and "
        "redis-server pinned to core 1, so a sink's own server does not count against it), "
        "rounds alternate the sinks and rotate which goes first; "
        "`none` skips the ledger entirely (no serialisation, no queue). Cost = 1 - median RPS / "
        "median RPS of `none`; the CPU columns divide the cascade process's user + system "
        "time (all threads, the SQLite writer's included) by the requests served, which a "
        "neighbour's load or the hypervisor's steal moves far less than RPS. Target: the "
        "ledger costs ≤ 5% of pass-through throughput.",
    )


def sigkill(upstream: ServerProcess, trials: int) -> None:
    rows = []
    for trial in range(trials):
        database = WORK / f"sigkill-{trial}.db"
        database.unlink(missing_ok=True)
        ledger = f"sqlite:///{database}"
        server = start_cascade(policy(upstream.url), ledger, WORK / f"sigkill-{trial}.log")
        load = Load(server.url, clients=6, pause_s=0).start()
        time.sleep(3)
        server.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        server.process.wait()
        load.stop()
        stored = {record["request_id"] for record in read_ledger(ledger)}
        lost = [killed_at - at for at, rid in load.received if rid not in stored]
        rate = len(load.received) / 3
        rows.append(
            [
                str(trial + 1),
                f"{len(load.received):,}",
                f"{rate:,.0f}",
                str(len(lost)),
                f"{max(lost) * 1000:.1f}" if lost else "—",
            ]
        )
        print(rows[-1], flush=True)
    append_results(
        "(d) Records lost to SIGKILL (sqlite ledger)",
        [
            "trial",
            "answers received",
            "answers/s",
            "records lost",
            "oldest lost answer, ms before kill",
        ],
        rows,
        notes="6 Python clients (tests/load.py) for 3 s, then SIGKILL. Lost = answered but not in "
        "the ledger. The writer gathers records for ≤ 10 ms and commits a batch as "
        "multi-row INSERTs (a transaction per 250 records); a commit survives the kill (WAL).",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: cascade on one, the load and upstreams on the other")
    os.sched_setaffinity(0, {1})  # inherited by wrk, the upstream and redis-server
    upstream = start_fake_upstream(WORK / "fake.log")
    try:
        throughput(upstream, args.rounds, args.seconds, args.connections)
        sigkill(upstream, args.trials)
    finally:
        upstream.stop()


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(Path.cwd()))
    main()
