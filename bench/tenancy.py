"""Benchmark: what auth, budgets and rate limits cost per request.

Same run, same fake upstream, same wrk load (c=16): a cascade with no keys and no limits
against ones whose caller's key is checked and whose team has a day budget and request and
token rates kept in a real redis-server: admitted from per-process leases (the default), and
with one reserve and one settle Lua script per request (`leases: {enabled: false}`).
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
    per_request = WORK / "tenancy-per-request.yaml"
    per_request.write_text(
        keyed.read_text().replace("{store: redis}", "{store: redis, leases: {enabled: false}}")
    )
    env = {"CASCADE_REDIS_URL": redis.url, "CASCADE_LEDGER": "none"}
    configs = (
        ("no auth, no limits", plain),
        ("key + budget + rates (Redis, leases)", keyed),
        ("key + budget + rates (Redis, a call per reserve and settle)", per_request),
    )
    servers = {
        name: start_cascade(path, "none", WORK / f"tenancy-{i}.log", env=env)
        for i, (name, path) in enumerate(configs)
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
    rows = []
    rps = {name: statistics.median(run[0] for run in found) for name, found in runs.items()}
    for name, found in runs.items():
        cpu_ms = statistics.median(run[1] for run in found)
        errors = sum(run[2] for run in found)
        rows.append([name, f"{rps[name]:,.0f}", f"{cpu_ms:.3f}", str(errors)])
    # each round's extra against the same round's pass-through (the machine's drift between
    # rounds cancels), then the median of those
    plain_runs, leased_runs, per_call_runs = runs.values()
    share, old_share = (
        100
        * statistics.median(
            run[1] / base[1] - 1 for run, base in zip(found, plain_runs, strict=True)
        )
        for found in (leased_runs, per_call_runs)
    )
    plain_rps, leased_rps, _ = rps.values()
    append_results(
        "(j) Auth, budgets and rate limits",
        ["cascade", "RPS (c=16)", "CPU ms per request", "errors"],
        rows,
        f"wrk, {args.seconds}s per measurement, medians of {args.rounds} alternating rounds "
        "(the extra CPU: the median of each round's against that round's pass-through), "
        "non-streamed 16-token chat to the fake upstream, one process each. Checks per "
        "request: the key's hash looked up; a day budget, requests and tokens per minute "
        "in redis-server, admitted from per-process leases (router/budgets/leases.py) or "
        "with a reserve and a settle Lua script each. Extra CPU with leases: "
        f"**{share:.1f}%** of a pass-through request's (target <= 10%; {old_share:.1f}% "
        f"without); RPS with leases **{100 * leased_rps / plain_rps:.0f}%** of without "
        "tenancy (target >= 90%).",
    )
    print(f"extra CPU per request: {share:.1f}% with leases, {old_share:.1f}% without")


if __name__ == "__main__":
    main()
