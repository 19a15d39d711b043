"""Benchmark: does feedback traffic hurt serving? One cascade (a pass-through route to the
fake upstream, the SQLite ledger), wrk at c=8 on chat completions: alone, then while a
client posts 10,000 feedback items (`POST /v1/feedback`, 4 at a time) on answers it served.
Reported: serving p50/p99 and RPS in each phase, and the feedback posts a second.

    python -m bench.feedback [--seconds 10] [--posts 10000] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import aiohttp
import requests

from bench.common import WORK, append_results, wrk
from tests.support.processes import start_cascade, start_fake_upstream


async def _post_feedback(
    url: str, ids: list[str], posts: int, rate: float | None
) -> tuple[float, int]:
    """Post `posts` items, 4 at a time (at most `rate` a second in all); (seconds taken,
    non-200 answers)."""
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(posts):
        queue.put_nowait(n)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            n = queue.get_nowait()
            body = {"request_id": ids[n % len(ids)], "score": (n % 10) / 9, "source": "bench"}
            async with session.post(f"{url}/v1/feedback", json=body) as response:
                await response.read()
                failures += response.status != 200
            if rate is not None:  # item n is due at n / rate seconds
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(4)))
    return time.perf_counter() - started, failures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--rate", type=float, help="feedback posts a second (default: flat out)")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    upstream = start_fake_upstream(WORK / "feedback-fake.log")
    policy = WORK / "feedback.yaml"
    policy.write_text(
        f"tiers: {{large: {{type: openai, api_base: '{upstream.url}/v1', model: m,"
        " max_concurrency: 1024}}\nroutes: {auto: {cascade: [{tier: large}]}}\n"
    )
    ledger = WORK / "feedback-ledger.db"
    ledger.unlink(missing_ok=True)
    server = start_cascade(policy, f"sqlite:///{ledger}", WORK / "feedback.log")
    try:
        url = server.url
        ids = [
            requests.post(
                f"{url}/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": f"q{n}"}]},
                timeout=30,
            ).headers["x-request-id"]
            for n in range(200)
        ]
        chat = f"{url}/v1/chat/completions"
        wrk(chat, "auto", connections=4, seconds=2)  # warm up
        alone = wrk(chat, "auto", connections=8, seconds=args.seconds)
        posted: dict[str, float] = {}

        def feed() -> None:
            seconds, failures = asyncio.run(_post_feedback(url, ids, args.posts, args.rate))
            posted.update(seconds=seconds, failures=failures)

        feeder = threading.Thread(target=feed)
        feeder.start()
        span = args.seconds if args.rate is None else round(args.posts / args.rate)
        loaded = wrk(chat, "auto", connections=8, seconds=span)
        feeder.join()
        rate = args.posts / posted["seconds"]
        rows = [
            ["chat alone", f"{alone.rps:,.0f}", f"{alone.p50_ms:.2f}", f"{alone.p99_ms:.2f}", "—"],
            [
                f"chat while {args.posts:,} feedback posts run"
                + ("" if args.rate is None else f" at {args.rate:,.0f}/s"),
                f"{loaded.rps:,.0f}",
                f"{loaded.p50_ms:.2f}",
                f"{loaded.p99_ms:.2f}",
                f"{rate:,.0f}/s ({posted['failures']:.0f} not 200; took {posted['seconds']:.1f} s)",
            ],
        ]
        for row in rows:
            print(row)
        append_results(
            "(t) Feedback posts beside serving",
            ["phase", "chat RPS", "chat p50 ms", "chat p99 ms", "feedback posts"],
            rows,
            notes="bench/feedback.py: one cascade, pass-through to the fake upstream, SQLite "
            "ledger; wrk c=8 on chat completions; feedback 4 at a time from one client on the "
            "same machine (it competes for the same cores: the p99 change is an upper bound).",
        )
    finally:
        server.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
