"""Benchmark (k): what `cascade serve --workers N` costs and gives on one machine.

    python bench/workers.py [--seconds 8] [--connections 32]

Memory: the shipped default policy (the bundled model mmap'd, pre-router and acceptance
model), SQLite ledger (so the node's ledger writer runs), N = 1, 2, 4; every worker answers
a few requests first (its pages touched), then the PSS of every process of the server
(/proc/PID/smaps_rollup): the supervisor, the ledger writer, each worker. PSS divides a
shared page among the processes mapping it, so the sum is what the server really holds and
the increase from N to N+k workers is what each extra worker costs. Target: ≤ 80 MB PSS per
extra worker.

Throughput: a pass-through policy in front of the fake upstream, wrk for each N (SQLite
ledger through the node's writer), RPS and RPS per worker. On a 2-core machine wrk, the
upstream and the workers share the cores: more workers than cores cannot scale, and the
figures say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import urllib.request
from pathlib import Path

from bench.common import WORK, append_results, wrk
from tests.support.processes import ServerProcess, start_cascade, start_fake_upstream

QUESTION = {
    "model": "auto",
    "max_tokens": 4,
    "messages": [{"role": "user", "content": "What is 2 + 2?"}],
}


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (multiprocessing's resource tracker aside)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in command:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss line")


def role(pid: int, root: int, workers: set[int]) -> str:
    if pid == root:
        return "supervisor" if workers != {root} else "server"
    return "worker" if pid in workers else "ledger writer"


def answer_everywhere(url: str, workers: int) -> set[int]:
    """Requests on fresh connections until every worker has answered at least 3."""
    answered: dict[int, int] = {}
    deadline = time.monotonic() + 300
    while len(answered) < workers or min(answered.values()) < 3:
        assert time.monotonic() < deadline, f"workers that answered: {answered}"
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=json.dumps(QUESTION).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            pid = int(json.loads(response.read())["pid"])
        answered[pid] = answered.get(pid, 0) + 1
    return set(answered)


def serve(policy: Path, workers: int, name: str, env: dict[str, str]) -> ServerProcess:
    flags = ("--workers", str(workers)) if workers > 1 else ()
    ledger = f"sqlite:///{WORK / f'{name}-{workers}.db'}"
    return start_cascade(policy, ledger, WORK / f"{name}-{workers}.log", *flags, env=env)


def memory(kv_cache_type: str) -> list[list[str]]:
    policy = WORK / "workers-memory-policy.yaml"
    text = Path("policies/default.yaml").read_text()
    policy.write_text(re.sub(r"kv_cache_type: \w+", f"kv_cache_type: {kv_cache_type}", text))
    rows, totals = [], {}
    for count in (1, 2, 4):
        server = serve(policy, count, "workers-memory", {"CASCADE_LARGE_API_BASE": ""})
        try:
            workers = answer_everywhere(server.url, count)
            if count == 1:
                workers = {server.process.pid}
            processes = {pid: pss_mb(pid) for pid in tree(server.process.pid)}
        finally:
            server.stop()
        totals[count] = sum(processes.values())
        by_role: dict[str, list[float]] = {}
        for pid, value in processes.items():
            by_role.setdefault(role(pid, server.process.pid, workers), []).append(value)
        parts = ", ".join(
            f"{name} {' / '.join(f'{v:.0f}' for v in sorted(values))}"
            for name, values in sorted(by_role.items())
        )
        rows.append([kv_cache_type, str(count), parts, f"**{totals[count]:.0f}**"])
    per_extra = (totals[4] - totals[2]) / 2
    rows.append([kv_cache_type, "each extra worker (2 → 4)", "", f"**{per_extra:.0f}**"])
    return rows


def throughput(seconds: int, connections: int) -> list[list[str]]:
    upstream = start_fake_upstream(WORK / "workers-fake.log")
    policy = WORK / "workers-passthrough.yaml"
    policy.write_text(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake,
          max_concurrency: 1024, max_queue: 4096}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
""")
    rows = []
    try:
        for count in (1, 2, 4):
            server = serve(policy, count, "workers-rps", {"CASCADE_MAX_CONNECTIONS_PER_IP": "0"})
            try:
                if count > 1:
                    answer_everywhere(server.url, count)
                wrk(server.url, "auto", connections=connections, seconds=2)  # warm up
                result = wrk(server.url, "auto", connections=connections, seconds=seconds)
            finally:
                server.stop()
            rows.append(
                [
                    str(count),
                    f"{result.rps:,.0f}",
                    f"{result.rps / count:,.0f}",
                    f"{result.p50_ms:.1f} / {result.p99_ms:.1f}",
                    str(result.errors),
                ]
            )
    finally:
        upstream.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    memory_rows = memory("f16") + memory("q8_0")
    print(memory_rows)
    append_results(
        "(k) Memory of `cascade serve --workers N`, default policy",
        ["local tier's KV cache", "workers", "PSS MiB per process", "PSS MiB, whole server"],
        memory_rows,
        notes="bench/workers.py. `policies/default.yaml` (bundled model mmap'd, pre-router, "
        "acceptance model), SQLite ledger (the node's ledger writer runs beside the workers), "
        "each worker having answered ≥ 3 requests. PSS from /proc/PID/smaps_rollup; N = 1 is "
        "one process (no supervisor, no writer). Target: ≤ 80 MB PSS per extra worker.",
    )
    rps_rows = throughput(args.seconds, args.connections)
    print(rps_rows)
    append_results(
        "(k') Pass-through throughput of `cascade serve --workers N`",
        ["workers", "RPS", "RPS per worker", "p50 / p99 ms", "wrk errors"],
        rps_rows,
        notes=f"bench/workers.py. wrk c={args.connections}, {args.seconds} s after a 2 s warm-up, "
        "pass-through to the fake upstream, SQLite ledger (per-node writer for N > 1). "
        f"wrk, the upstream and the workers share the machine's {os.cpu_count()} cores.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
