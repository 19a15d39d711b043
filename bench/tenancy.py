"""Benchmark: what auth, budgets and rate limits cost per request.

Same run, same fake upstream, same wrk load (c=16): a cascade with no keys and no limits
against ones whose caller's key is checked and whose team has a day budget and request and
token rates kept in a real redis-server: admitted from per-process leases (the default), and
with one reserve and one settle Lua script per request (`leases: {enabled: false}`).
The figure is the serving process's CPU per request (utime + stime from /proc), and the
extra share it costs. Target: <= 10% of a pass-through request's CPU.

On a shared VM one server's CPU time per request drifts by ±20% from one 4-second run to the
next, more than the difference measured. So the servers are measured three ways:

- alone, in turns whose order rotates each round: each one's RPS at c=16;
- side by side: the pass-through and one other server loaded at the same moment, both on
  the same CPU, so that whatever the machine does meanwhile it does to both. Their ratio is
  the extra CPU. A second pass-through server measured the same way shows the method's own
  noise;
- where valgrind is installed, instructions per request (bench/instructions.py): no noise.

With two CPUs or more the servers run on CPU 0 and wrk, the upstream and Redis on CPU 1.

    python -m bench.tenancy [--seconds 4] [--rounds 7] [--instructions 400]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import threading
from pathlib import Path

from bench import instructions
from bench.common import WORK, append_results, wrk
from tests.support.processes import ServerProcess, start_cascade, start_fake_upstream
from tests.support.redis_server import RedisServer

KEY = "sk-bench"  # what bench.common's wrk script sends
PLAIN, AGAIN, LEASED, PER_CALL = (
    "no auth, no limits",
    "no auth, no limits (again: the method's noise)",
    "key + budget + rates (Redis, leases)",
    "key + budget + rates (Redis, a call per reserve and settle)",
)


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


def side_by_side(servers: list[ServerProcess], seconds: int) -> list[tuple[float, float]]:
    """(CPU ms per request, RPS) of each server, all loaded by wrk at the same moment (each
    measured as `measure` measures one, in threads started together)."""
    found: dict[int, tuple[float, float, int]] = {}

    def load(index: int, server: ServerProcess) -> None:
        found[index] = measure(server, seconds)

    threads = [
        threading.Thread(target=load, args=(index, server)) for index, server in enumerate(servers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [(found[index][1], found[index][0]) for index in range(len(servers))]


def _pin(cpu: int) -> None:
    """This process, and what it starts from now on, on `cpu` (with two CPUs or more)."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--instructions",
        type=int,
        default=400,
        help="requests counted under callgrind per server (0: not counted)",
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    pinned = (os.cpu_count() or 1) >= 2
    _pin(1)
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
    configs = {PLAIN: plain, AGAIN: plain, LEASED: keyed, PER_CALL: per_request}
    _pin(0)
    servers = {
        name: start_cascade(path, "none", WORK / f"tenancy-{i}.log", env=env)
        for i, (name, path) in enumerate(configs.items())
    }
    _pin(1)
    alone: dict[str, list[tuple[float, float, int]]] = {name: [] for name in servers}
    extra: dict[str, list[float]] = {name: [] for name in servers if name != PLAIN}
    paced: dict[str, list[float]] = {name: [] for name in extra}  # RPS against the plain's
    counted: dict[str, float] = {}
    names = list(servers)
    try:
        for round_ in range(args.rounds):  # each round in another order: no seat is favoured
            turn = round_ % len(names)
            for name in names[turn:] + names[:turn]:
                alone[name].append(measure(servers[name], args.seconds))
            others = list(extra)
            for name in others[turn % len(others) :] + others[: turn % len(others)]:
                base, other = side_by_side([servers[PLAIN], servers[name]], args.seconds)
                extra[name].append(other[0] / base[0] - 1)
                paced[name].append(other[1] / base[1])
        for server in servers.values():
            server.stop()
        if args.instructions and instructions.available():
            for i, name in enumerate((PLAIN, LEASED, PER_CALL)):
                counted[name] = instructions.per_request(
                    configs[name],
                    WORK / f"tenancy-callgrind-{i}.log",
                    env,
                    requests=args.instructions,
                )
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
        redis.stop()
    rps = {name: statistics.median(run[0] for run in found) for name, found in alone.items()}
    share = {name: 100 * statistics.median(found) for name, found in extra.items()}
    sharing = {name: 100 * statistics.median(found) for name, found in paced.items()}
    rows = []
    for name, found in alone.items():
        cpu_ms = statistics.median(run[1] for run in found)
        errors = sum(run[2] for run in found)
        rows.append(
            [
                name,
                f"{rps[name]:,.0f}",
                f"{cpu_ms:.3f}",
                "—" if name == PLAIN else f"{share[name]:+.1f}%",
                "—" if name == PLAIN else f"{sharing[name]:.0f}%",
                f"{counted[name] / 1e6:.3f} M" if name in counted else "—",
                f"{100 * (counted[name] / counted[PLAIN] - 1):+.1f}%" if name in counted else "—",
                str(errors),
            ]
        )
    counted_note = (
        f" Instructions per request (callgrind, {args.instructions} requests at c=16 after a "
        f"warm-up): **{100 * (counted[LEASED] / counted[PLAIN] - 1):+.1f}%** with leases."
        if counted
        else ""
    )
    append_results(
        "(j) Auth, budgets and rate limits",
        [
            "cascade",
            "RPS (c=16, alone)",
            "CPU ms per request (alone)",
            "extra CPU (side by side)",
            "RPS (side by side, of the pass-through's)",
            "instructions per request",
            "extra instructions",
            "errors",
        ],
        rows,
        f"wrk, {args.seconds}s per measurement, medians of {args.rounds} rounds. Alone: each "
        "server in turn, the order rotating each round. Side by side: the pass-through and "
        "one other server loaded at the same moment on the same CPU, the extra CPU per "
        "request being the median of their ratios (the second pass-through shows the "
        "method's noise)"
        f"{'; servers on CPU 0, wrk, the upstream and Redis on CPU 1' if pinned else ''}. "
        "Non-streamed 16-token chat to the fake upstream, one process each. Checks per "
        "request: the key's hash looked up; a day budget, requests and tokens per minute "
        "in redis-server, admitted from per-process leases (router/budgets/leases.py) or "
        "with a reserve and a settle Lua script each. Extra CPU with leases: "
        f"**{share[LEASED]:.1f}%** of a pass-through request's (target <= 10%; "
        f"{share[PER_CALL]:.1f}% without; the method's noise {share[AGAIN]:+.1f}%); RPS "
        f"with leases **{sharing[LEASED]:.0f}%** of without tenancy side by side, "
        f"{100 * rps[LEASED] / rps[PLAIN]:.0f}% alone (target >= 90%; the pass-through "
        f"alone twice: {100 * rps[AGAIN] / rps[PLAIN]:.0f}%).{counted_note}",
    )
    print(
        f"extra CPU per request: {share[LEASED]:.1f}% with leases, {share[PER_CALL]:.1f}% "
        f"without, the method's noise {share[AGAIN]:+.1f}%"
    )


if __name__ == "__main__":
    main()
