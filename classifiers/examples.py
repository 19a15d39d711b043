"""Training and evaluation rows from either source of labels.

- a label run (`cascade classify label`, JSONL): did the small tier answer correctly; the
  answers themselves (for acceptance models); the group is the dataset.
- a correctness table (RouteLLM / RouterBench CSV, `classifiers.tables`) with `--weak` and
  `--strong` columns; the group is the file (e.g. one MMLU subject).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from classifiers.estimators import Answered
from classifiers.tables import load_table

Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Examples:
    prompts: list[str]
    groups: npt.NDArray[np.str_]
    weak: Flags  # the small / weak model answered correctly
    strong: Flags | None  # the strong model answered correctly (tables only)
    answers: list[Answered] | None  # the small tier's answers (label runs only)
    sha256: str  # of the source file(s)
    source: str

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def strong_or_assumed(self) -> Flags:
        """Label runs have no strong column: the escalation target is taken as correct."""
        return self.strong if self.strong is not None else np.ones(len(self), dtype=bool)

    def benchmarks(self) -> npt.NDArray[np.str_]:
        """`mmlu_anatomy` -> `mmlu`, `gsm8k_responses` -> `gsm8k`, `arc-easy` stays."""
        return np.array([g.split("_", 1)[0] for g in self.groups])

    def subset(self, mask: Flags) -> Examples:
        index = np.flatnonzero(mask)
        return Examples(
            [self.prompts[i] for i in index],
            self.groups[index],
            self.weak[index],
            None if self.strong is None else self.strong[index],
            None if self.answers is None else [self.answers[i] for i in index],
            self.sha256,
            self.source,
        )


def prompt_id(prompt: str) -> str:
    return hashlib.sha1(prompt.encode(), usedforsecurity=False).hexdigest()[:16]


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_examples(path: Path, weak: str | None = None, strong: str | None = None) -> Examples:
    """A `.jsonl` label run, else a CSV table (file or folder) with `weak`/`strong` columns."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            raise ValueError(f"{path}: no labeled rows")
        return Examples(
            [r["prompt"] for r in rows],
            np.array([r["dataset"] for r in rows]),
            np.array([bool(r["correct"]) for r in rows]),
            None,
            [Answered(r["prompt"], r["answer"], r["logprobs"], r["finish_reason"]) for r in rows],
            _digest([path]),
            str(path),
        )
    if weak is None or strong is None:
        raise ValueError(f"{path}: a correctness table needs --weak COL and --strong COL")
    table = load_table(path)
    files = sorted(path.rglob("*.csv")) if path.is_dir() else [path]
    return Examples(
        table.prompts,
        table.groups,
        table.column(weak),
        table.column(strong),
        None,
        _digest(files),
        str(path),
    )
