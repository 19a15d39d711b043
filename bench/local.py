"""Benchmarks (b) and (c): the local tier.

(b) decode tok/s through the proxy, confidence on (the `auto` route: the local answer is
    generated with per-token log-probabilities, scored, then served), against llama-bench
    built from the llama.cpp source inside the llama-cpp-python 0.3.36 sdist; same model,
    same threads.
(c) RSS of the serving process with the local tier loaded, idle and after the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import requests

from bench.common import WORK, append_results, rss_mb
from router.backends.local_llama import bundled_model_path
from tests.support.processes import start_cascade

SDIST = "llama_cpp_python-0.3.36"
PROMPT = "Write a long story about a brave dragon who learns to read."


def llama_bench() -> Path:
    """Build llama-bench from the sdist's vendor/llama.cpp (once; cached in bench/.work)."""
    root = WORK / "llama"
    binary = root / "build" / "bin" / "llama-bench"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{SDIST}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(root),
                "llama-cpp-python==0.3.36",
            ],
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    subprocess.run(
        [
            "cmake",
            "-S",
            str(root / SDIST / "vendor" / "llama.cpp"),
            "-B",
            str(root / "build"),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
            "-DLLAMA_BUILD_TOOLS=ON",
        ],
        check=True,
    )
    subprocess.run(
        [
            "cmake",
            "--build",
            str(root / "build"),
            "--target",
            "llama-bench",
            "-j",
            str(os.cpu_count() or 1),
        ],
        check=True,
    )
    return binary


def native_decode(binary: Path, threads: int, tokens: int) -> float:
    out = subprocess.run(
        [
            str(binary),
            "-m",
            str(bundled_model_path()),
            "-t",
            str(threads),
            "-p",
            "0",
            "-n",
            str(tokens),
            "-r",
            "5",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)[0]["avg_ts"])


def proxy_decode(url: str, runs: int, tokens: int, records: Path) -> tuple[float, int]:
    """Median decode tok/s from the decision records: (tokens - 1) / (latency - ttft)."""
    ids = []
    for _ in range(runs):
        response = requests.post(
            f"{url}/v1/chat/completions",
            timeout=300,
            json={
                "model": "auto",
                "max_tokens": tokens,
                "temperature": 0,
                "messages": [{"role": "user", "content": PROMPT}],
            },
        )
        response.raise_for_status()
        assert response.headers["x-cascade-tier"] == "small"
        ids.append(response.headers["x-request-id"])
    time.sleep(0.2)  # records are written in batches, off the request path
    by_id = {r["request_id"]: r for r in map(json.loads, records.read_text().splitlines())}
    rates, produced = [], []
    for request_id in ids:
        attempt = by_id[request_id]["attempts"][0]
        assert attempt["confidence"]["method"] == "mean_prob"
        decode_s = (attempt["latency_ms"] - attempt["ttft_ms"]) / 1000
        rates.append((attempt["completion_tokens"] - 1) / decode_s)
        produced.append(attempt["completion_tokens"])
    return statistics.median(rates), min(produced)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    binary = llama_bench()
    policy = WORK / "local.yaml"
    policy.write_text(
        textwrap.dedent(f"""\
        version: 1
        tiers:
          small: {{type: llama_cpp, n_threads: {args.threads}}}
          large: {{type: openai, model: none}}
        routes:
          auto:
            cascade:
              - {{tier: small, acceptance: {{method: mean_prob, threshold: 0.0}}}}
              - {{tier: large}}
        """)
    )
    records = WORK / "local-decisions.jsonl"
    records.unlink(missing_ok=True)
    server = start_cascade(policy, f"jsonl:///{records}", WORK / "local.log")
    try:
        idle = rss_mb(server.process.pid)
        proxy_decode(server.url, 1, 16, records)  # warm up
        native = native_decode(binary, args.threads, args.tokens)
        ours, produced = proxy_decode(server.url, args.runs, args.tokens, records)
        native_after = native_decode(binary, args.threads, args.tokens)
        busy = rss_mb(server.process.pid)
    finally:
        server.stop()
    native = statistics.mean([native, native_after])
    ratio = ours / native
    print(f"native {native:.1f} tok/s, proxy {ours:.1f} tok/s ({ratio:.0%}), rss {busy}")
    append_results(
        "(b) Local-tier decode through the proxy vs llama-bench",
        ["measurement", "tok/s", "ratio"],
        [
            [
                f"llama-bench tg{args.tokens}, -t {args.threads} (mean of two runs around ours)",
                f"{native:.1f}",
                "100%",
            ],
            [
                f"cascade `auto` route, confidence on, median of {args.runs} "
                f"(>= {produced} tokens)",
                f"{ours:.1f}",
                f"**{ratio:.0%}** (target >= 90%)",
            ],
        ],
        notes="SmolLM2-135M-Instruct Q4_1 (bundled); proxy rate from the decision records: "
        "(completion_tokens - 1) / (latency - ttft), i.e. decode only, as llama-bench.",
    )
    append_results(
        "(c) Serving-process memory with the local tier loaded",
        [
            "when",
            "VmRSS MiB",
            "RssAnon MiB",
            "RssFile MiB (mmap'd weights, shared)",
            "VmHWM MiB (peak)",
        ],
        [
            [
                label,
                f"{m['VmRSS']:.0f}",
                f"{m['RssAnon']:.0f}",
                f"{m['RssFile']:.0f}",
                f"{m['VmHWM']:.0f}",
            ]
            for label, m in (("idle, after start", idle), ("after the decode runs", busy))
        ],
        notes="Target: <= 250 MB. The GGUF is mmap'd: its pages are file-backed and shared "
        "with every other process (or worker) that maps the same file.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
