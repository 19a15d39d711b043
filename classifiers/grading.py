"""Deterministic grading: numeric (GSM8K, SVAMP), letter (ARC, MMLU), normalised text (NQ)."""

from __future__ import annotations

import re
import string

from classifiers.datasets import Kind

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_NUMBER = re.compile(r"answer\s*(?:is|:)?\s*[:=]?\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_ANSWER_LETTER = re.compile(r"answer(?:\s+is)?\s*:?\s*\(?([A-E])\b")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-E])(?:[).:\s]|$)")
_ANY_LETTER = re.compile(r"\b([A-E])[).:]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def extract_number(answer: str) -> float | None:
    """The number after 'Answer:' / 'the answer is', else the last number in the text."""
    if found := _ANSWER_NUMBER.findall(answer):
        return _number(found[-1])
    numbers = _NUMBER.findall(answer)
    return _number(numbers[-1]) if numbers else None


def extract_letter(answer: str) -> str | None:
    """'The answer is B' > a leading 'B' / '(B)' / 'B.' > the first 'B)' / 'B.' / 'B:'."""
    for pattern in (_ANSWER_LETTER, _LEADING_LETTER, _ANY_LETTER):
        if match := pattern.search(answer):
            return match.group(1)
    return None


def normalise(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def grade(kind: Kind, answer: str, gold: tuple[str, ...]) -> bool:
    if kind == "numeric":
        value, expected = extract_number(answer), _number(gold[0])
        return value is not None and expected is not None and abs(value - expected) < 1e-6
    if kind == "letter":
        return extract_letter(answer) == gold[0]
    said = f" {normalise(answer)} "
    return any(f" {normalise(g)} " in said for g in gold if normalise(g))
