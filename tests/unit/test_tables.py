from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.datasets import default_root
from classifiers.tables import load_table

SHARED = default_root() / "routellm_labels"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def test_a_folder_is_one_table_grouped_by_file() -> None:
    table = load_table(SHARED / "mmlu")
    assert len(table.prompts) == 9512
    assert len(set(table.groups)) == 38
    assert set(table.correct) == {WEAK, STRONG}
    assert 0.6 < table.column(WEAK).mean() < table.column(STRONG).mean() < 0.9


def test_response_columns_are_not_models() -> None:
    table = load_table(SHARED / "gsm8k_responses.csv")
    assert set(table.correct) == {WEAK, STRONG}
    assert len(table.prompts) == 915


def test_bad_values_and_columns_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("prompt,m1\nhello,maybe\n")
    with pytest.raises(ValueError, match=r"a.csv:2:m1: 'maybe' is not a boolean"):
        load_table(tmp_path)
    with pytest.raises(KeyError, match="no column 'm2'"):
        load_table(SHARED / "gsm8k_responses.csv").column("m2")
