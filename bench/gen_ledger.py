"""Generate a synthetic SQLite ledger: realistic-looking records for benchmarks and demos.

    python bench/gen_ledger.py --records 1000000 --days 14 --out bench/.work/ledger-1m.db

Teams, routes and tiers are fixed; the small tier answers ~70% of requests (confidence
drawn around its threshold), the rest escalate to the large tier; a few are degraded,
shed or invalid. Classifier scores drift upward in the last days (to show PSI). Beside the
requests: shadow checks of some local answers and, now and then, a team's refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

import orjson

from router.ledger import Entry
from router.ledger.sqlite import SQLiteSink
from router.records import iso_time

TEAMS = ("search", "support", "research", "growth", "default")
SMALL = (0.01, 0.02)  # USD per 1M tokens (input, output)
LARGE = (0.15, 0.60)
MODELS = {"small": "smollm2-135m-instruct-q4_1", "large": "gpt-4o-mini"}


def record(n: int, ts: float, rng: random.Random, days: int, start: float) -> dict[str, object]:
    team = TEAMS[min(int(rng.paretovariate(1.2)) - 1, len(TEAMS) - 1)]
    prompt = int(rng.lognormvariate(4, 0.8)) + 5
    completion = int(rng.lognormvariate(3.5, 0.7)) + 1
    confidence = min(1.0, max(0.0, rng.gauss(0.62, 0.15)))
    attempts: list[dict[str, object]] = []
    small_cost = (prompt * SMALL[0] + completion * SMALL[1]) / 1e6
    large_cost = (prompt * LARGE[0] + completion * LARGE[1]) / 1e6
    status, final = "ok", "small"
    roll = rng.random()
    small_ms = rng.uniform(80, 900)
    base = {
        "backend": "llama_cpp",
        "model": "smollm2-135m-instruct-q4_1",
        "started_at": iso_time(ts),
    }
    if roll < 0.01:
        status, final = "invalid", None
    elif roll < 0.02:
        attempts.append(
            {
                "tier": "small",
                **base,
                "latency_ms": 0.2,
                "ttft_ms": None,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "confidence": None,
                "outcome": "shed",
                "error": "queue full",
            }
        )
        final = "large"
    else:
        kept = confidence >= 0.55
        attempts.append(
            {
                "tier": "small",
                **base,
                "latency_ms": round(small_ms, 3),
                "ttft_ms": round(small_ms * 0.2, 3),
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cost_usd": small_cost,
                "confidence": {
                    "method": "mean_prob",
                    "value": round(confidence, 4),
                    "threshold": 0.55,
                },
                "outcome": "accepted" if kept else "escalated",
                "error": None,
            }
        )
        if not kept:
            final = "large"
    if final == "large":
        degraded = rng.random() < 0.03
        large_ms = rng.uniform(300, 3000)
        attempts.append(
            {
                "tier": "large",
                "backend": "openai",
                "model": "gpt-4o-mini",
                "started_at": iso_time(ts),
                "latency_ms": round(large_ms, 3),
                "ttft_ms": round(large_ms * 0.3, 3),
                "prompt_tokens": prompt,
                "completion_tokens": 0 if degraded else completion,
                "cost_usd": 0.0 if degraded else large_cost,
                "confidence": None,
                "outcome": "timeout" if degraded else "accepted",
                "error": "timed out" if degraded else None,
            }
        )
        if degraded:
            attempts[0]["outcome"] = "degraded"
            status, final = "degraded", "small"
    cost = sum(float(a["cost_usd"]) for a in attempts)  # type: ignore[arg-type]
    counterfactual = large_cost if final else 0.0
    drift = 0.15 if ts > start + (days - 2) * 86400 else 0.0
    return {
        "request_id": f"gen-{n:09d}", "endpoint": "/v1/chat/completions",
        "policy_version": "0866960e7209", "ts": iso_time(ts), "team": team,
        "key_id": None, "user": None, "tags": [], "stream": False, "requested_model": "auto",
        "route": None if status == "invalid" else "auto", "rule": None,
        "classifier": {"name": "prerouter", "version": "demo",
                       "score": round(min(1.0, max(0.0, rng.betavariate(2, 3) + drift)), 4)},
        "attempts": attempts, "final_tier": final,
        "final_model": MODELS.get(final or ""),
        "status": status, "http_status": 400 if status == "invalid" else 200,
        "error": "bad request" if status == "invalid" else None,
        "latency_ms": round(sum(float(a["latency_ms"]) for a in attempts), 3),  # type: ignore[arg-type]
        "cost_usd": cost, "counterfactual_cost_usd": counterfactual,
        "saved_usd": counterfactual - cost, "cache_hit": False, "prompt": None,
        "prompt_truncated": False,
    }  # fmt: skip


def extras(n: int, body: dict[str, object], rng: random.Random) -> list[dict[str, object]]:
    """What the ledger holds beside requests: a shadow check of ~1 in 40 accepted local
    answers (85% agree), and now and then a second's budget or rate refusals of a team."""
    out: list[dict[str, object]] = []
    attempts = body["attempts"]
    assert isinstance(attempts, list)
    if attempts and attempts[0]["outcome"] == "accepted" and rng.random() < 0.025:
        out.append(
            {
                "kind": "shadow",
                "request_id": f"shadow-{n:09d}",
                "shadow_of": body["request_id"],
                "team": body["team"],
                "route": body["route"],
                "ts": body["ts"],
                "policy_version": body["policy_version"],
                "judge": "normalized",
                "local_tier": "small",
                "local_model": MODELS["small"],
                "reference_tier": "large",
                "reference_model": MODELS["large"],
                "local_outcome": "accepted",
                "verdict": "agree" if rng.random() < 0.85 else "disagree",
                "target_quality": 0.8,
                "cost_usd": float(body["counterfactual_cost_usd"]),  # type: ignore[arg-type]
            }
        )
    if rng.random() < 0.004:
        reason = rng.choice(("budget", "rate"))
        out.append(
            {
                "kind": "rejections",
                "request_id": f"rejections-{n:09d}",
                "ts": body["ts"],
                "team": rng.choice(TEAMS[:3]),
                "counts": [{"route": "auto", "reason": reason, "count": rng.randint(1, 20)}],
            }
        )
    return out  # fmt: skip


async def generate(out: Path, records: int, days: int, seed: int) -> None:
    sink = SQLiteSink(out)
    rng = random.Random(seed)
    end = time.time()
    start = end - days * 86400
    step = (end - start) / records
    batch: list[Entry] = []
    for n in range(records):
        ts = start + n * step
        body = record(n, ts, rng, days, start)
        for item in (body, *extras(n, body, rng)):
            batch.append(
                Entry(
                    str(item["request_id"]), str(item["ts"]), str(item["team"]), orjson.dumps(item)
                )
            )
        if len(batch) >= 5000:
            await sink.write(batch)
            batch = []
    if batch:
        await sink.write(batch)
    await sink.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.unlink(missing_ok=True)
    asyncio.run(generate(args.out, args.records, args.days, args.seed))


if __name__ == "__main__":
    main()
