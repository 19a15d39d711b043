"""Benchmark (a): proxy overhead on pass-through.

Same run, same fake upstream (tests.support.fake_upstream), same wrk load:
  upstream alone  vs  cascade -> upstream  vs  LiteLLM proxy 1.102.4 -> upstream.
LiteLLM's proxy is installed into its own venv (bench/.work/litellm-venv) by this script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.common import WORK, WrkResult, append_results, wrk
from tests.support.processes import (
    ServerProcess,
    free_port,
    start,
    start_cascade,
    start_fake_upstream,
)

LITELLM_VENV = WORK / "litellm-venv"


def litellm_proxy_bin() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]==1.102.4"],
            check=True,
        )
    return binary


def start_servers(upstream: str) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    policy = WORK / "passthrough.yaml"
    policy.write_text(
        textwrap.dedent(f"""\
        version: 1
        tiers:
          large: {{type: openai, api_base: "{upstream}/v1", model: fake, max_concurrency: 1024}}
        routes:
          auto: {{cascade: [{{tier: large}}]}}
        """)
    )
    # Default settings (info logging, decision records on) — what a user runs.
    cascade = start_cascade(policy, f"sqlite:///{WORK / 'passthrough.db'}", WORK / "cascade.log")
    cascade2 = start_cascade(
        policy, f"sqlite:///{WORK / 'passthrough2.db'}", WORK / "cascade2.log", "--workers", "2"
    )
    config = WORK / "litellm.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        model_list:
          - model_name: large
            litellm_params: {{model: openai/fake, api_base: "{upstream}/v1", api_key: sk-fake}}
        litellm_settings: {{telemetry: false}}
        """)
    )
    port = free_port()
    litellm = start(
        ["--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        port,
        "/health/liveliness",
        WORK / "litellm.log",
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"},
        executable=str(litellm_proxy_bin()),
        timeout=180,
    )
    return cascade, cascade2, litellm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    upstream = start_fake_upstream(WORK / "fake.log")
    cascade, cascade2, litellm = start_servers(upstream.url)
    targets = {
        "upstream alone": (upstream.url, "fake"),
        "cascade": (cascade.url, "large"),
        "cascade --workers 2": (cascade2.url, "large"),
        "LiteLLM proxy 1.102.4": (litellm.url, "large"),
    }
    loaded: dict[str, WrkResult] = {}
    single: dict[str, WrkResult] = {}
    try:
        for name, (url, model) in targets.items():
            wrk(f"{url}/v1/chat/completions", model, connections=4, seconds=2)  # warm up
            loaded[name] = wrk(
                f"{url}/v1/chat/completions",
                model,
                connections=args.connections,
                seconds=args.seconds,
            )
            single[name] = wrk(
                f"{url}/v1/chat/completions", model, connections=1, seconds=args.seconds
            )
            print(name, loaded[name], single[name], flush=True)
    finally:
        for server in (litellm, cascade2, cascade, upstream):
            server.stop()
    base, ours, theirs = (
        loaded["upstream alone"],
        loaded["cascade"],
        loaded["LiteLLM proxy 1.102.4"],
    )
    rows = []
    for name in targets:
        rows.append(
            [
                name,
                f"{loaded[name].rps:,.0f}",
                f"{loaded[name].p99_ms:.2f}",
                f"{single[name].p50_ms:.3f}",
                f"{single[name].p99_ms:.3f}",
                str(loaded[name].errors + single[name].errors),
            ]
        )
    added_p50 = single["cascade"].p50_ms - single["upstream alone"].p50_ms
    added_p99 = single["cascade"].p99_ms - single["upstream alone"].p99_ms
    summary = (
        f"cascade p99 under load (c={args.connections}): **{ours.p99_ms:.1f} ms** "
        f"(target ≤ 20 ms; p50 {ours.p50_ms:.1f} ms); "
        f"cascade/upstream RPS: **{ours.rps / base.rps:.0%}** (target ≥ 25%); "
        f"cascade/LiteLLM RPS: **{ours.rps / theirs.rps:.1f}x** (target ≥ 25x); "
        f"added latency at concurrency 1: p50 **{added_p50:.3f} ms** (target ≤ 0.4), "
        f"p99 **{added_p99:.3f} ms** (target ≤ 1.5)."
    )
    print(summary)
    append_results(
        "(a) Pass-through overhead",
        [
            "target",
            f"RPS (c={args.connections})",
            "p99 ms (loaded)",
            "p50 ms (c=1)",
            "p99 ms (c=1)",
            "errors",
        ],
        rows,
        notes=(
            f"wrk, {args.seconds}s per measurement, non-streamed 16-token chat, fake "
            f"upstream (`python -m tests.support.fake_upstream`), one process each unless "
            f"named, all on this machine; the ratios compare one cascade process with one LiteLLM "
            f"worker. {summary}"
        ),
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
