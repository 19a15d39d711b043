"""Prompt and answer features, checked on prompts whose values are known by hand."""

from __future__ import annotations

import math

from classifiers.features import (
    ACCEPTANCE_NAMES,
    ANSWER_NAMES,
    PROMPT_NAMES,
    acceptance_features,
    answer_features,
    prompt_features,
)


def _named(prompt: str) -> dict[str, float]:
    values = prompt_features(prompt)
    assert len(values) == len(PROMPT_NAMES)
    return dict(zip(PROMPT_NAMES, values, strict=True))


def test_multiple_choice_layout() -> None:
    prompt = "Which is NOT a prime?\nA. 2\nB. 3\nC) 9\nD. 7\nAnswer:"
    f = _named(prompt)
    assert f["log_options"] == math.log1p(4)
    assert f["log_stem_chars"] == math.log1p(len("Which is NOT a prime?\n"))
    assert f["negation"] == 1.0
    assert f["questions"] == 1.0
    assert f["log_numbers"] == math.log1p(4)
    assert f["digit_share"] == 4 / len(prompt)


def test_word_problem_cues() -> None:
    prompt = (
        "Tom has twice as many apples as Ann, who has 12. Each costs $3. What is 25% of the total?"
    )
    f = _named(prompt)
    assert f["log_number_words"] == math.log1p(1)  # twice
    assert f["log_compare_cues"] == math.log1p(1)  # each
    assert f["ratio_cues"] == 1.0
    assert f["log_options"] == 0.0
    assert f["math_share"] == 2 / len(prompt)  # $ and %
    assert f["code"] == 0.0 and _named("```python\nx = 1\n```")["code"] == 1.0


def test_empty_and_non_ascii_prompts() -> None:
    assert all(math.isfinite(v) for v in prompt_features(""))
    assert _named("naïve café")["log_words"] == math.log1p(2)


def test_answer_features() -> None:
    values = answer_features("Q?\nA. x\nB. y", "B. y", [-0.1, -2.0, -0.3], "stop")
    f = dict(zip(ANSWER_NAMES, values, strict=True))
    assert f["lp_min"] == -2.0 and f["lp_first"] == -0.1
    assert math.isclose(f["lp_mean"], -0.8)
    assert math.isclose(f["low_prob_share"], 1 / 3)
    assert f["answer_is_option"] == 1.0 and f["truncated"] == 0.0
    assert f["answer_prompt_overlap"] == 1.0
    empty = answer_features("Q?", "", [], "length")
    assert empty[ANSWER_NAMES.index("truncated")] == 1.0
    assert len(acceptance_features("Q?", "a", [-1.0], "stop")) == len(ACCEPTANCE_NAMES)
