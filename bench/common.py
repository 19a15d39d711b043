"""Shared benchmark plumbing: machine description, wrk runs, the results table."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
RESULTS = BENCH / "RESULTS.md"

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model": "%s", "max_tokens": 16, '
    .. '"messages": [{"role": "user", "content": "Say hello."}]}'
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB, Python {platform.python_version()}"


def today() -> str:
    return dt.date.today().isoformat()


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(url: str, model: str, *, connections: int, seconds: int, threads: int = 1) -> WrkResult:
    """POST a small chat request with wrk; latency percentiles from `--latency`."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    script = WORK / f"post-{model}.lua"
    WORK.mkdir(exist_ok=True)
    script.write_text(POST_LUA % model)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = sum(
        int(n)
        for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout|read|write|connect) (\d+)", out)
    )
    return WrkResult(rps, p50, p99, errors)


def append_results(title: str, header: list[str], rows: list[list[str]], notes: str = "") -> None:
    """Append one dated table to bench/RESULTS.md (newest last)."""
    lines = [f"\n## {title} — {today()}\n", f"Machine: {machine()}\n"]
    if notes:
        lines.append(f"{notes}\n")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nWritten by the scripts in `bench/`; "
            "each run appends a dated table. Ratios within one run are what "
            "matter: absolute numbers on shared machines are noisy.\n"
        )
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts (anonymous vs file-backed, i.e. mmap'd weights) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024
    return values
