"""Instructions a server executes per request, counted by valgrind's callgrind: a figure with
no noise from other tenants of the machine, its clock or its caches (what wall-clock CPU time
per request cannot give on a shared 2-core VM; bench (j)).

The server starts under callgrind with counting off; after a warm-up, counting is switched
on, exactly `requests` requests are sent (`concurrency` at a time, keep-alive), counting is
switched off, and the server stops and writes its totals.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp

from tests.support.processes import start_cascade

BODY = (
    b'{"model": "auto", "max_tokens": 16, '
    b'"messages": [{"role": "user", "content": "Say hello."}]}'
)  # what bench.common's wrk script sends


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


async def send(url: str, requests: int, concurrency: int, key: str = "sk-bench") -> int:
    """Send exactly `requests` chat requests; how many were not 200."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    left, failed = requests, 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    failed += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def per_request(
    policy: Path,
    log_path: Path,
    env: dict[str, str],
    *,
    requests: int = 400,
    concurrency: int = 16,
) -> float:
    """Instructions per request of `cascade serve --policy POLICY` under callgrind."""
    out = log_path.with_suffix(".callgrind")
    out.unlink(missing_ok=True)
    callgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    ]
    server = start_cascade(policy, "none", log_path, env=env, under=callgrind, timeout=600)
    url = f"{server.url}/v1/chat/completions"
    try:
        asyncio.run(send(url, requests // 2, concurrency))  # warm-up, not counted
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.process.pid)], check=True, capture_output=True)
        failed = asyncio.run(send(url, requests, concurrency))
        subprocess.run([*control, "off", str(server.process.pid)], check=True, capture_output=True)
    finally:
        server.stop()
    if failed:
        raise RuntimeError(f"{failed} of {requests} requests failed: {log_path}")
    totals = [
        int(line.split()[1])
        for line in out.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    return max(totals) / requests
