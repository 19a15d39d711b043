"""Benchmark (r): every provider fault under the default settings, with a healthy fallback
and without one; a primary down for a minute; a failing primary with the retry budget spent.

Two fake upstreams (tests/support/fake_upstream.py) and one `cascade serve` whose tiers set
nothing but `api_base` and `model`: the limits measured are the shipped defaults (a first
token within 15 s, 10 s between stream events, 60 s for a whole answer). Each fault of
tests/support/faults.py is asked whole and streamed, through route `guarded` (the fallback
healthy) and of the failing tier by name (no fallback). Then the primary answers 503 for
`--outage-s` seconds while a client sends a request every 0.5 s, and then 200 concurrent
requests meet a primary that always fails with no breaker to stop them.

    python -m bench.failover [--outage-s 60]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import WORK, append_results
from tests.support.faults import ANSWER, Fault, ask, fault_matrix, seen, set_faults
from tests.support.processes import ServerProcess, start_cascade, start_fake_upstream


def _policy(flaky: str, spare: str) -> str:
    return f"""
tiers:
  flaky: {{type: openai, api_base: "{flaky}/v1", model: fake}}
  spare: {{type: openai, api_base: "{spare}/v1", model: spare-model}}
routes:
  guarded:
    cascade: [{{tier: flaky}}]
    fallbacks: {{flaky: [spare]}}
"""


def _serve(flaky: ServerProcess, spare: ServerProcess) -> ServerProcess:
    policy = WORK / "failover.yaml"
    policy.write_text(_policy(flaky.url, spare.url))
    return start_cascade(policy, f"sqlite:///{WORK / 'failover.db'}", WORK / "failover.log")


def _cell(
    flaky: ServerProcess, spare: ServerProcess, case: Fault, model: str, *, stream: bool
) -> tuple[str, bool]:
    """What the client got and in how long; whether it is what the matrix promises. Each
    cell on a server of its own: the breaker one cell opened does not decide the next."""
    server = _serve(flaky, spare)
    set_faults(flaky.url, **case.faults)
    try:
        started = time.monotonic()
        status, _, text = ask(server.url, model, stream=stream, timeout=180)
        took = time.monotonic() - started
    finally:
        set_faults(flaky.url)
        server.stop()
    if model == "guarded" and "content_filter" not in case.faults:
        expected: int | str = ANSWER
    else:
        expected = case.alone_streamed if stream else case.alone_whole
    got: int | str = text if status == 200 and text == ANSWER else status
    if status == 200 and text.startswith("error event"):
        got = "error event"
    shown = "answer" if got == ANSWER else str(got)
    return f"{shown}, {took:.1f} s", got == expected


def _outage(server: ServerProcess, flaky: ServerProcess, seconds: float) -> list[str]:
    set_faults(flaky.url, status=503)
    before = seen(flaky.url)["requests"]
    results = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        status, headers, text = ask(server.url, "guarded", stream=len(results) % 2 == 1)
        results.append((status == 200 and text == ANSWER, headers.get("x-cascade-tier")))
        time.sleep(0.5)
    hits = seen(flaky.url)["requests"] - before
    set_faults(flaky.url)
    time.sleep(11)  # the default breaker's cool-down (10 s): the next request is its probe
    back = [ask(server.url, "guarded", stream=False)[1].get("x-cascade-tier") for _ in range(3)]
    whole = sum(ok for ok, _ in results)
    return [
        f"primary 503 for {seconds:g} s",
        f"{whole}/{len(results)} whole answers",
        f"{hits} calls to the primary while down ({hits / seconds:.2f}/s)",
        f"after: {', '.join(str(t) for t in back)}",
    ]


def _budget_spent(server: ServerProcess, flaky: ServerProcess) -> list[str]:
    set_faults(flaky.url, status=500)
    before = seen(flaky.url)["requests"]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda _: ask(server.url, "guarded", stream=False), range(200)))
    took = time.monotonic() - started
    calls = seen(flaky.url)["requests"] - before
    set_faults(flaky.url)
    healthy = requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    whole = sum(status == 200 and text == ANSWER for status, _, text in results)
    return [
        "primary always 500, 200 concurrent",
        f"{whole}/200 whole answers in {took:.1f} s",
        f"{calls} calls to the primary ({calls / 200:.2f} per request; {calls / took:.0f}/s)",
        f"healthz after: {'200' if healthy else 'failing'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage-s", type=float, default=60)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    flaky = start_fake_upstream(WORK / "failover-flaky.log")
    spare = start_fake_upstream(WORK / "failover-spare.log")
    rows, kept = [], 0
    matrix = fault_matrix(late_ms=20_000)  # the scripted 20 s
    try:
        for name, case in matrix.items():
            row = [name]
            for model in ("guarded", "flaky"):
                for stream in (False, True):
                    shown, ok = _cell(flaky, spare, case, model, stream=stream)
                    kept += ok
                    row.append(shown if ok else f"**{shown}** (unexpected)")
            rows.append(row)
            print(" | ".join(row), flush=True)
        server = _serve(flaky, spare)
        try:
            outage = _outage(server, flaky, args.outage_s)
            print(outage, flush=True)
            budget = _budget_spent(server, flaky)
        finally:
            server.stop()
    finally:
        flaky.stop()
        spare.stop()
    rows += [outage, budget]
    append_results(
        "(r) Provider faults under the default settings, with a healthy fallback and without",
        ["fault", "fallback, whole", "fallback, streamed", "alone, whole", "alone, streamed"],
        rows,
        notes=f"bench/failover.py: {kept} of {len(matrix) * 4} cells as promised (with a "
        "healthy fallback the whole answer in every case but the content-policy 400, which "
        "is the client's answer; alone, the error given in tests/support/faults.py). Tier "
        "settings are the shipped defaults. Each cell: what the client got, and how long it "
        "took. The last two rows: a primary down then healthy, and the retry budget spent.",
    )


if __name__ == "__main__":
    main()
