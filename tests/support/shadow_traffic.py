"""Labelled traffic for the shadow-check test and benchmark: benchmark questions with short
answers, a gold-answer upstream as the reference tier, and what the client was served."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import openai

from classifiers.datasets import Item, load, sample
from tests.support.processes import ServerProcess, free_port, start

DATASETS = ("arc-easy", "arc-challenge", "mmlu", "nq")  # short answers: letters and names


def items(per_dataset: int, seed: int = 0) -> list[Item]:
    return [item for name in DATASETS for item in sample(load(name), per_dataset, seed)]


def start_gold(found: list[Item], folder: Path) -> ServerProcess:
    """The reference tier: each question answered with its (first) gold answer."""
    answers = folder / "answers.jsonl"
    answers.write_text(
        "".join(json.dumps({"prompt": i.prompt, "answer": i.gold[0]}) + "\n" for i in found)
    )
    port = free_port()
    return start(
        ["-m", "tests.support.gold_upstream", "--port", str(port), "--answers", str(answers)],
        port,
        "/v1/models",
        folder / "gold.log",
    )


def policy(
    gold: ServerProcess,
    *,
    threshold: float,
    rate: float,
    usd_per_day: float = 10.0,
    shadow: str = "",
) -> str:
    """The bundled model, accepted by mean token probability, then the gold upstream;
    `shadow`: more of the route's shadow settings (", key: value, ...")."""
    return f"""
tiers:
  small: {{type: llama_cpp, n_ctx: 2048, kv_cache_type: q8_0}}
  large:
    type: openai
    api_base: "{gold.url}/v1"
    model: gold
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
routes:
  auto:
    cascade:
      - {{tier: small, acceptance: {{method: mean_prob, threshold: {threshold}}}}}
      - {{tier: large}}
    shadow: {{rate: {rate}, usd_per_day: {usd_per_day}, judge: normalized{shadow}}}
"""


@dataclass(frozen=True)
class Served:
    item: Item
    request_id: str
    tier: str
    text: str


def drive(url: str, found: list[Item]) -> list[Served]:
    served = []
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-x", max_retries=0) as client:
        for item in found:
            raw = client.chat.completions.with_raw_response.create(
                model="auto",
                messages=[{"role": "user", "content": item.prompt}],
                max_tokens=item.max_tokens,
                temperature=0,
            )
            text = raw.parse().choices[0].message.content or ""
            served.append(
                Served(item, raw.headers["x-request-id"], raw.headers["x-cascade-tier"], text)
            )
    return served
