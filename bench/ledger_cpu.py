"""Benchmark (d'): the ledger's CPU per record, in-process, against the CPU a pass-through
request costs — the ratio the throughput benchmark (bench/ledger.py) measures, without its
noise.

On one core, throughput is 1 / CPU per request, so the ledger's share of pass-through
throughput is (CPU per record) / (CPU per pass-through request + CPU per record). Both are
measured here in one run: the records through the real writer (`Ledger`: queue, orjson,
batches after the 10 ms linger, the sink's thread) with process CPU time (all threads), and
the pass-through request as the CPU time of a `CASCADE_LEDGER=none` cascade under wrk,
divided by the requests it served. Records arrive in bursts shaped like the server's load
(`--rate` per second), so batches are as large as under that load. The harness's own cost
(waking every 10 ms to submit a burst) is measured with `CASCADE_LEDGER=none`, where
`submit` returns at once, and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import structlog
import uvloop

from bench.common import WORK, append_results, wrk
from bench.ledger import load, pin, policy
from router.ledger import Ledger, open_sink, parse_ledger_url
from router.ledger.node import NodeSink
from router.records import DecisionRecord, ended
from tests.support.processes import start_cascade, start_fake_upstream
from tests.support.redis_server import RedisServer


def record(number: int) -> DecisionRecord:
    """A pass-through request's record, as the server fills it in."""
    started = time.perf_counter()
    finished = DecisionRecord(
        request_id=f"35e5b96e5607aebf{number:010d}",
        endpoint="/v1/chat/completions",
        policy_version="f8f85a7502a5",
        team="default",
        requested_model="auto",
        route="auto",
    )
    finished.attempts.append(
        ended("large", "openai", "fake", started, prompt_tokens=12, completion_tokens=8)
    )
    finished.final_tier, finished.final_model, finished.latency_ms = "large", "fake", 0.41
    finished.cost_usd = finished.counterfactual_cost_usd = 6.6e-06
    return finished


async def ledger_cpu(url: str, records: int, rate: int, socket: Path | None = None) -> float:
    """CPU µs per record through the writer to the sink at `url` (or, with `socket`, to the
    node's ledger writer listening there: this process's share only)."""
    ledger = Ledger(
        NodeSink(socket) if socket is not None else open_sink(parse_ledger_url(url)),
        WORK / "ledger-cpu-spool",
        structlog.get_logger(),
    )
    ledger.start()
    burst = max(1, rate // 100)  # what arrives in 10 ms at `rate` per second
    prepared = [record(n) for n in range(records)]
    started = time.process_time()
    for start_at in range(0, records, burst):
        for item in prepared[start_at : start_at + burst]:
            ledger.submit(item)
        await asyncio.sleep(0.01)
    await ledger.aclose()
    used = time.process_time() - started
    assert ledger.stats().written == records or url == "none", ledger.stats()
    return used / records * 1e6


WRITER = """
import sys, uvloop, structlog
from pathlib import Path
from router.ledger.node import run_node_writer
uvloop.run(run_node_writer(Path(sys.argv[1]), Path(sys.argv[2]), structlog.get_logger()))
"""


def start_writer(database: Path, socket: Path) -> subprocess.Popen[bytes]:
    """The node's ledger writer in a process of its own, on core 1."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(database), str(socket)])
    os.sched_setaffinity(process.pid, {1})
    deadline = time.monotonic() + 30
    while not socket.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the ledger writer did not start")
        time.sleep(0.05)
    return process


def process_cpu(pid: int) -> float:
    """User + system seconds of a process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_writer_cpu(records: int, rate: int, harness: float) -> tuple[float, float]:
    """(this process's CPU µs per record handing records to the node's writer, the writer's
    CPU µs per record)."""
    socket = WORK / "ledger-cpu-node.sock"
    writer = start_writer(WORK / "ledger-cpu-node.db", socket)
    try:
        before = process_cpu(writer.pid)
        worker = uvloop.run(ledger_cpu("", records, rate, socket=socket)) - harness
        written = (process_cpu(writer.pid) - before) / records * 1e6
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    return worker, written


def passthrough_cpu(seconds: int, connections: int, rounds: int) -> tuple[float, float]:
    """(CPU µs per request, RPS) of a cascade with no ledger, pinned to core 0, under wrk."""
    upstream = start_fake_upstream(WORK / "fake.log")
    server = start_cascade(policy(upstream.url), "none", WORK / "ledger-cpu-none.log")
    pin(server.process.pid, {0})
    try:
        wrk(f"{server.url}/v1/chat/completions", "auto", connections=4, seconds=2)
        samples = [load(server, connections, seconds) for _ in range(rounds)]
    finally:
        server.stop()
        upstream.stop()
    rps, cpu = min(samples, key=lambda sample: sample[1])  # the least disturbed round
    return cpu, rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--rate", type=int, default=3_000, help="records per second (bursts)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    os.sched_setaffinity(0, {1})  # wrk, the upstream, redis on core 1
    request_us, rps = passthrough_cpu(seconds=8, connections=32, rounds=3)
    os.sched_setaffinity(0, {0})  # the writer measured here on core 0, as the server was
    redis = RedisServer(WORK / "ledger-cpu-redis")
    redis.start()
    sinks = {
        "sqlite (default)": lambda: f"sqlite:///{WORK / 'ledger-cpu.db'}",
        "redis stream": lambda: redis.url,
        "jsonl": lambda: f"jsonl:///{WORK / 'ledger-cpu.jsonl'}",
    }
    harness = statistics.median(
        uvloop.run(ledger_cpu("none", args.records, args.rate)) for _ in range(args.repeats)
    )
    print(f"harness {harness:.1f} µs CPU per record", flush=True)
    rows = []
    try:
        for name, url in sinks.items():
            samples = []
            for _ in range(args.repeats):
                for leftover in (WORK / "ledger-cpu.db", WORK / "ledger-cpu.jsonl"):
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{leftover}{suffix}").unlink(missing_ok=True)
                used = uvloop.run(ledger_cpu(url(), args.records, args.rate))
                samples.append(used - harness)
                print(name, f"{samples[-1]:.1f} µs CPU per record", flush=True)
            per_record = statistics.median(samples)
            share = per_record / (request_us + per_record)
            rows.append(
                [
                    name,
                    " / ".join(f"{s:.1f}" for s in samples),
                    f"{request_us:.0f}",
                    f"**{share:.1%}**",
                ]
            )
        samples, writer_samples = [], []
        for _ in range(args.repeats):
            worker, written = node_writer_cpu(args.records, args.rate, harness)
            samples.append(worker)
            writer_samples.append(written)
            print(f"node: worker {worker:.1f}, writer {written:.1f} µs CPU per record", flush=True)
        per_record = statistics.median(samples)
        node_total = per_record + statistics.median(writer_samples)
        rows.append(
            [
                "sqlite, per-node writer (--workers): the worker's share; the writer's "
                f"({', '.join(f'{w:.1f}' for w in writer_samples)}) on another core",
                " / ".join(f"{s:.1f}" for s in samples),
                f"{request_us:.0f}",
                f"**{per_record / (request_us + per_record):.1%}** "
                f"(node: {node_total / (request_us + node_total):.1%})",
            ]
        )
    finally:
        redis.stop()
    append_results(
        "(d') Ledger CPU per record vs a pass-through request's CPU",
        [
            "CASCADE_LEDGER",
            f"ledger CPU µs per record ({args.records:,} at {args.rate:,}/s; harness "
            f"{harness:.1f} µs subtracted), repeats",
            f"pass-through CPU µs per request (none, {rps:,.0f} RPS)",
            "ledger's share of throughput",
        ],
        rows,
        notes="bench/ledger_cpu.py. The writer and sink in-process on core 0 (redis-server on "
        "core 1), process CPU time (all threads) per record; the pass-through request's CPU "
        "from a CASCADE_LEDGER=none cascade pinned to core 0 under wrk (c=32, 8 s, least "
        "disturbed of 3 rounds). Share = ledger / (request + ledger). Target ≤ 5%.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(Path.cwd()))
    main()
