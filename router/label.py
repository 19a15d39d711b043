"""Run a tier of a policy over graded prompts and store each outcome (resumable JSONL).

cascade classify label --tier small --datasets gsm8k,arc-easy --limit 200 --out labels.jsonl
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from classifiers.datasets import Item, load, sample
from classifiers.features import repetition
from classifiers.grading import grade
from router.backends.base import Backend, BackendError, GenerationParams, Message, Prompt
from router.backends.registry import backend_type, build_backend
from router.confidence import features
from router.policy import load_policy


def outcome(
    item: Item,
    answer: str,
    *,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: float,
    logprobs: list[float] | None,
) -> dict[str, Any]:
    return {
        "dataset": item.dataset,
        "id": item.id,
        "prompt": item.prompt,
        "gold": list(item.gold),
        "answer": answer,
        "correct": grade(item.kind, answer, item.gold),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": round(latency_ms, 1),
        "finish_reason": finish_reason,
        "repetition": round(repetition(answer), 4),
        "features": features(logprobs or []),
        "logprobs": [round(lp, 4) for lp in logprobs or []],
    }


def _done(out: Path) -> set[tuple[str, str]]:
    if not out.exists():
        return set()
    done = set()
    for line in out.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run is redone
        done.add((row["dataset"], row["id"]))
    return done


async def label(
    policy_path: Path,
    tier: str | None,
    datasets: Sequence[str],
    *,
    limit: int | None,
    out: Path,
    seed: int = 0,
) -> int:
    """Label what `out` does not hold yet; returns how many items were labeled now."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    policy = load_policy(policy_path).policy
    name = tier or next(n for n, s in policy.tiers.items() if backend_type(s).local)
    # Round-robin over datasets, so a run stopped early (it resumes) is still balanced.
    per_dataset = [sample(load(dataset), limit, seed) for dataset in datasets]
    items = [item for group in itertools.zip_longest(*per_dataset) for item in group if item]
    done = _done(out)
    todo = [item for item in items if (item.dataset, item.id) not in done]
    async with aiohttp.ClientSession() as session:
        backend: Backend | None = await build_backend(name, policy.tiers[name], session)
        if backend is None:
            raise SystemExit(f"tier '{name}' is not configured")
        try:
            with (
                out.open("a") as handle,
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                ) as progress,
            ):
                task = progress.add_task(f"labeling with {name}", total=len(todo))
                for item in todo:
                    started = time.perf_counter()
                    prompt = Prompt(messages=(Message("user", item.prompt),))
                    params = GenerationParams(max_tokens=item.max_tokens, temperature=0.0)
                    try:
                        done_ = await backend.complete(prompt, params)
                    except BackendError as exc:
                        progress.console.print(f"{item.dataset}/{item.id}: {exc.message}")
                        progress.advance(task)
                        continue
                    row = outcome(
                        item,
                        done_.text,
                        finish_reason=done_.finish_reason,
                        prompt_tokens=done_.prompt_tokens,
                        completion_tokens=done_.completion_tokens,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        logprobs=done_.token_logprobs,
                    )
                    handle.write(json.dumps(row) + "\n")
                    handle.flush()
                    progress.advance(task)
        finally:
            await backend.aclose()
    return len(todo)
