"""A team's own graded prompts (`--datasets PATH.jsonl`): parsed strictly, errors by line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from classifiers.datasets import Item, load


def write(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_own_prompts_load_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "support_faq.jsonl",
        {"prompt": "What is 6 x 7?", "gold": "42", "kind": "numeric"},
        "",
        {"id": "q9", "prompt": "Capital of France?", "gold": ["Paris"], "kind": "text",
         "max_tokens": 16},
    )  # fmt: skip
    assert load(str(path)) == [
        Item("support_faq", "line-1", "What is 6 x 7?", ("42",), "numeric", 256),
        Item("support_faq", "q9", "Capital of France?", ("Paris",), "text", 16),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", ":1: not JSON"),
        ("[1, 2]", ":1: expected an object"),
        ({"prompt": " ", "gold": "1", "kind": "numeric"}, ":1: 'prompt' must be a non-empty"),
        ({"prompt": "p", "gold": [], "kind": "numeric"}, ":1: 'gold' must be a string or a list"),
        ({"prompt": "p", "gold": "1", "kind": "essay"}, ":1: 'kind' must be one of numeric"),
        ({"prompt": "p", "gold": "1", "kind": "text", "max_tokens": 0}, ":1: 'max_tokens'"),
    ],
)
def test_bad_rows_are_refused_with_their_line(tmp_path: Path, row: object, message: str) -> None:
    path = write(tmp_path / "own.jsonl", row)
    with pytest.raises(ValueError, match=re.escape(message)):
        load(str(path))


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"or a \.jsonl file"):
        load("gsm9k")
