"""Soak: 100,000+ requests mixing valid, invalid and disconnecting clients against one
cascade process (fake upstream tier); RSS, open files and event-loop tasks sampled as it
goes. After warm-up they must stay flat.

    python bench/soak.py [--requests 100000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import re
import textwrap
import time
from pathlib import Path

import aiohttp

from bench.common import WORK, append_results, rss_mb
from tests.support.corpus import bodies
from tests.support.processes import start_cascade, start_fake_upstream

VALID = b'{"model": "guarded", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}'
STREAM = VALID[:-1] + b', "stream": true}'


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def tasks(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    found = re.search(r"^cascade_asyncio_tasks (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else -1


async def one(session: aiohttp.ClientSession, url: str, kind: str, data: bytes) -> str:
    try:
        if kind == "leave":  # hang up after the first chunk of a stream
            async with session.post(url, data=STREAM) as response:
                await response.content.readany()
                response.close()
            return "left"
        async with session.post(url, data=io.BytesIO(data)) as response:
            await response.read()
            return str(response.status)
    except aiohttp.ClientError:
        return "client error"


async def soak(url: str, pid: int, total: int, concurrency: int, samples: int) -> list[list[str]]:
    rng = random.Random(1)
    invalid = [case.body for case in bodies(seed=3, count=2000)]
    rows: list[list[str]] = []
    statuses: dict[str, int] = {}
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(total):
            queue.put_nowait(number)
        every = total // samples

        async def worker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                roll = rng.random()
                kind, data = (
                    ("valid", VALID)
                    if roll < 0.55
                    else ("valid", STREAM)
                    if roll < 0.7
                    else ("invalid", rng.choice(invalid))
                    if roll < 0.9
                    else ("leave", b"")
                )
                result = await one(session, f"{url}/v1/chat/completions", kind, data)
                statuses[result] = statuses.get(result, 0) + 1
                if number % every == every - 1:
                    memory = rss_mb(pid)
                    rows.append(
                        [
                            f"{number + 1:,}",
                            f"{time.monotonic() - started:.0f}",
                            f"{memory['VmRSS']:.1f}",
                            f"{memory['RssAnon']:.1f}",
                            str(open_files(pid)),
                            str(await tasks(session, url)),
                        ]
                    )
                    print(rows[-1], dict(sorted(statuses.items())), flush=True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    rows.append(
        ["statuses", ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items())), "", "", "", ""]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--ledger", default="sqlite", choices=["sqlite", "jsonl", "none"])
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    upstream = start_fake_upstream(WORK / "soak-fake.log")
    policy = WORK / "soak.yaml"
    policy.write_text(
        textwrap.dedent(f"""\
        tiers:
          large: {{type: openai, api_base: "{upstream.url}/v1", model: fake, max_concurrency: 256}}
        routes:
          guarded: {{cascade: [{{tier: large}}]}}
        """)
    )
    ledger = {
        "sqlite": f"sqlite:///{WORK / 'soak.db'}",
        "jsonl": f"jsonl:///{WORK / 'soak.jsonl'}",
        "none": "none",
    }[args.ledger]
    for stale in WORK.glob("soak.db*"):
        stale.unlink()
    server = start_cascade(policy, ledger, WORK / "soak.log")
    try:
        rows = asyncio.run(
            soak(server.url, server.process.pid, args.requests, args.concurrency, args.samples)
        )
    finally:
        server.stop()
        upstream.stop()
    append_results(
        "(g) Soak: valid, invalid and disconnecting clients",
        ["requests", "seconds", "VmRSS MiB", "RssAnon MiB", "open files", "asyncio tasks"],
        rows,
        notes=f"{args.requests:,} requests at concurrency {args.concurrency} to one cascade "
        f"process ({args.ledger} ledger, fake upstream tier): 55% whole answers, 15% streams, 20% "
        "malformed requests from tests/support/corpus.py, 10% clients that hang up after "
        "a stream's first chunk. Sampled every tenth; flat after warm-up is the target.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
