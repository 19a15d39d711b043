"""Benchmark: what auth, budgets and rate limits cost per request.

Same run, same fake upstream, same wrk load (c=16): a cascade with no keys and no limits
against one whose caller's key is checked and whose team has a day budget and request and
token rates kept in a real redis-server (one reserve and one settle Lua script per request).
The figure is the serving process's CPU per request (utime + stime from /proc), and the
extra share it costs. Target: <= 10% of a pass-through request's CPU.

    python -m bench.tenancy [--seconds 10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
from pathlib import Path

from bench.common import WORK, append_results, wrk
from tests.support.processes import ServerProcess, start_cascade, start_fake_upstream
from tests.support.redis_server import RedisServer

KEY = "sk-bench"  # what bench.common's wrk script sends


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: ServerProcess, seconds: int) -> tuple[float, float, int]:
    """(RPS, CPU ms per request, errors) of one wrk run."""
    url = f"{server.url}/v1/chat/completions"
    wrk(url, "auto", connections=4, seconds=2)  # warm up
    before = cpu_seconds(server.process.pid)
    result = wrk(url, "auto", connections=16, seconds=seconds)
    used = cpu_seconds(server.process.pid) - before
    return result.rps, 1000 * used / (result.rps * seconds), result.errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    upstream = start_fake_upstream(WORK / "tenancy-fake.log")
    redis = RedisServer(WORK / "tenancy-redis")
    redis.start()
    tier = (
        f"large: {{type: openai, api_base: '{upstream.url}/v1', model: m, max_concurrency: 1024}}"
    )
    plain = WORK / "tenancy-plain.yaml"
    plain.write_text(f"tiers: {{{tier}}}\nroutes: {{auto: {{cascade: [{{tier: large}}]}}}}\n")
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    keyed = WORK / "tenancy-keyed.yaml"
    keyed.write_text(
        plain.read_text()
        + "teams:\n  bench:\n"
        + f"    keys: [{{sha256: {digest}}}]\n"
        + "    limits: {usd_per_day: 1000, requests_per_minute: 10000000,"
        + " tokens_per_minute: 1000000000}\n"
        + "budgets: {store: redis}\n"
    )
    env = {"CASCADE_REDIS_URL": redis.url, "CASCADE_LEDGER": "none"}
    servers = {
        name: start_cascade(path, "none", WORK / f"tenancy-{name}.log", env=env)
        for name, path in (("no auth, no limits", plain), ("key + budget + rates (Redis)", keyed))
    }
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in servers}
    try:
        for _ in range(args.rounds):  # alternating, so that both see the same noise
            for name, server in servers.items():
                runs[name].append(measure(server, args.seconds))
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
        redis.stop()
    rows, figures = [], {}
    for name, found in runs.items():
        rps = statistics.median(run[0] for run in found)
        cpu_ms = figures[name] = statistics.median(run[1] for run in found)
        errors = sum(run[2] for run in found)
        rows.append([name, f"{rps:,.0f}", f"{cpu_ms:.3f}", str(errors)])
    base, checked = figures.values()
    share = 100 * (checked - base) / base
    append_results(
        "(j) Auth, budgets and rate limits",
        ["cascade", "RPS (c=16)", "CPU ms per request", "errors"],
        rows,
        f"wrk, {args.seconds}s per measurement, medians of {args.rounds} alternating rounds, "
        "non-streamed 16-token chat to the fake upstream, "
        f"one process each. Checks per request: the key's hash looked up, one reserve and one "
        f"settle Lua script in redis-server. Extra CPU: **{share:.1f}%** of a pass-through "
        f"request's (target <= 10%).",
    )
    print(f"extra CPU per request: {share:.1f}%")


if __name__ == "__main__":
    main()
