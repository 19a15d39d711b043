"""Correctness tables in the RouteLLM / RouterBench CSV format: a `prompt` column and one
boolean column per model. A folder of CSVs is one table; each file is a group (e.g. an
MMLU subject), used to hold whole groups out."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


@dataclass(frozen=True, slots=True)
class Table:
    prompts: list[str]
    groups: npt.NDArray[np.str_]
    correct: dict[str, npt.NDArray[np.bool_]]  # model column -> per-prompt correctness

    def column(self, name: str) -> npt.NDArray[np.bool_]:
        if name not in self.correct:
            raise KeyError(f"no column '{name}'; the table has {', '.join(sorted(self.correct))}")
        return self.correct[name]


def _flag(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{where}: '{value}' is not a boolean")


def load_table(path: Path) -> Table:
    files = sorted(path.rglob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no CSV files")
    prompts: list[str] = []
    groups: list[str] = []
    columns: dict[str, list[bool]] | None = None
    for file in files:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = [f for f in reader.fieldnames or [] if f != "prompt"]
            # boolean columns only: RouteLLM files also carry `<model>_response` text
            models = [f for f in fields if not f.endswith("_response")]
            if "prompt" not in (reader.fieldnames or []):
                raise ValueError(f"{file}: no 'prompt' column")
            if columns is None:
                columns = {m: [] for m in models}
            elif set(models) != set(columns):
                raise ValueError(f"{file}: columns {sorted(models)} differ from {sorted(columns)}")
            for line, row in enumerate(reader, start=2):
                prompts.append(row["prompt"])
                groups.append(file.stem)
                for model in models:
                    columns[model].append(_flag(row[model], f"{file}:{line}:{model}"))
    assert columns is not None
    return Table(
        prompts,
        np.array(groups),
        {model: np.array(values, dtype=bool) for model, values in columns.items()},
    )
