"""Graded prompts: the benchmarks in ../shared/data (read in place, never copied), or a
team's own graded prompts in a JSONL file."""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["numeric", "letter", "text"]

DATASETS = ("gsm8k", "svamp", "arc-easy", "arc-challenge", "mmlu", "nq")

_NUMERIC_HINT = "\nSolve it step by step, then write the final number after 'Answer:'."
_LETTER_HINT = "\nAnswer with the letter of the correct option."
_TEXT_HINT = "\nAnswer in a few words."


@dataclass(frozen=True, slots=True)
class Item:
    dataset: str
    id: str
    prompt: str  # the user message the tier sees
    gold: tuple[str, ...]  # accepted answers (one for numeric and letter)
    kind: Kind
    max_tokens: int


def default_root() -> Path:
    """`CASCADE_DATA`, else `shared/data` beside the repository (as the project lays it out)."""
    if override := os.environ.get("CASCADE_DATA"):
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _gsm8k(root: Path) -> Iterator[Item]:
    with (root / "gsm8k" / "test.jsonl").open() as handle:
        for index, line in enumerate(handle):
            row = json.loads(line)
            gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
            yield Item(
                "gsm8k", f"test-{index}", row["question"] + _NUMERIC_HINT, (gold,), "numeric", 256
            )


def _svamp(root: Path) -> Iterator[Item]:
    for row in json.loads((root / "svamp" / "SVAMP.json").read_text()):
        question = f"{row['Body'].strip()} {row['Question'].strip()}"
        gold = f"{float(row['Answer']):g}"
        yield Item("svamp", row["ID"], question + _NUMERIC_HINT, (gold,), "numeric", 192)


def _choices(labels_texts: list[tuple[str, str]]) -> str:
    return "\n".join(f"{label}. {text}" for label, text in labels_texts)


def _arc(root: Path, level: str) -> Iterator[Item]:
    name = f"arc-{level.lower()}"
    with (root / "arc" / f"ARC-{level}-Test.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            choices = [(c["label"], c["text"]) for c in row["question"]["choices"]]
            if not all(label in "ABCDE" for label, _ in choices):
                continue  # a few items use 1-4 labels; keep the letter format uniform
            prompt = f"{row['question']['stem']}\n{_choices(choices)}{_LETTER_HINT}"
            yield Item(name, row["id"], prompt, (row["answerKey"],), "letter", 24)


def _mmlu(root: Path) -> Iterator[Item]:
    for path in sorted((root / "mmlu" / "test").glob("*_test.csv")):
        subject = path.name.removesuffix("_test.csv")
        with path.open(newline="") as handle:
            for index, row in enumerate(csv.reader(handle)):
                question, options, answer = row[0], row[1:5], row[5]
                prompt = f"{question}\n{_choices(list(zip('ABCD', options, strict=True)))}"
                yield Item(
                    "mmlu", f"{subject}-{index}", prompt + _LETTER_HINT, (answer,), "letter", 24
                )


def _nq(root: Path) -> Iterator[Item]:
    with (root / "nq_open" / "NQ-open.dev.jsonl").open() as handle:
        for index, line in enumerate(handle):
            row = json.loads(line)
            question = row["question"].strip()
            yield Item(
                "nq",
                f"dev-{index}",
                f"{question[:1].upper()}{question[1:]}?{_TEXT_HINT}",
                tuple(row["answer"]),
                "text",
                32,
            )


_KINDS: tuple[Kind, ...] = ("numeric", "letter", "text")


def _own(path: Path) -> Iterator[Item]:
    """A team's graded prompts: one JSON object a line, `{"prompt": ..., "gold": "42" or
    ["Paris", "paris, france"], "kind": "numeric" | "letter" | "text"}`, optionally `"id"`
    (default: the line number) and `"max_tokens"` (default 256). Prompts are sent as written."""
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected an object")
            prompt, gold, kind = row.get("prompt"), row.get("gold"), row.get("kind")
            golds = [gold] if isinstance(gold, str) else gold
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"{where}: 'prompt' must be a non-empty string")
            if (
                not isinstance(golds, list)
                or not golds
                or not all(isinstance(g, str) for g in golds)
            ):
                raise ValueError(f"{where}: 'gold' must be a string or a list of strings")
            if kind not in _KINDS:
                raise ValueError(f"{where}: 'kind' must be one of {', '.join(_KINDS)}")
            max_tokens = row.get("max_tokens", 256)
            if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
                raise ValueError(f"{where}: 'max_tokens' must be an integer in 1..4096")
            item_id = str(row.get("id", f"line-{number}"))
            yield Item(path.stem, item_id, prompt, tuple(golds), kind, max_tokens)


def load(name: str, root: Path | None = None) -> list[Item]:
    """A benchmark by name, or a team's graded prompts by the path of a `.jsonl` file."""
    if name.endswith(".jsonl"):
        return list(_own(Path(name)))
    root = root or default_root()
    readers = {
        "gsm8k": lambda: _gsm8k(root),
        "svamp": lambda: _svamp(root),
        "arc-easy": lambda: _arc(root, "Easy"),
        "arc-challenge": lambda: _arc(root, "Challenge"),
        "mmlu": lambda: _mmlu(root),
        "nq": lambda: _nq(root),
    }
    if name not in readers:
        raise ValueError(
            f"unknown dataset '{name}'; choose from {', '.join(DATASETS)} or a .jsonl file"
        )
    return list(readers[name]())


def sample(items: list[Item], limit: int | None, seed: int = 0) -> list[Item]:
    """A deterministic sample (the same `seed` and `limit` give the same items)."""
    if limit is None or limit >= len(items):
        return items
    return random.Random(seed).sample(items, limit)  # noqa: S311 - sampling, not secrets
