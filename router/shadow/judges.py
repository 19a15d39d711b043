"""Judges: does the local answer say what the reference tier's answer says?

Each returns `agree`, `disagree`, or `inconclusive` (the reference gave nothing to compare
with). They are for answers that can be compared mechanically — short answers, numbers,
options, structured output; free prose needs an LLM judge (not built yet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import orjson

from classifiers.grading import extract_letter, extract_number, normalise

Verdict = Literal["agree", "disagree", "inconclusive"]
_SHORT_WORDS = 6  # an answer this short may appear inside the other one


def exact(local: str, reference: str) -> Verdict:
    if not reference.strip():
        return "inconclusive"
    return "agree" if local.strip() == reference.strip() else "disagree"


def normalized(local: str, reference: str) -> Verdict:
    """The same text once case, punctuation, articles and spacing are evened out; or the
    shorter (≤ 6 words, e.g. "Paris") said as a whole in the longer; else the same final
    number (GSM8K style: 'the answer is 1,200' = '1200'), else the same option letter."""
    ours, theirs = normalise(local), normalise(reference)
    if not theirs:
        return "inconclusive"
    if ours == theirs:
        return "agree"
    short, long = sorted((ours, theirs), key=len)
    if short and len(short.split()) <= _SHORT_WORDS and f" {short} " in f" {long} ":
        return "agree"
    ours_number, theirs_number = extract_number(local), extract_number(reference)
    if ours_number is not None and theirs_number is not None:
        return "agree" if abs(ours_number - theirs_number) < 1e-9 else "disagree"
    ours_letter, theirs_letter = extract_letter(local), extract_letter(reference)
    if ours_letter is not None and theirs_letter is not None:
        return "agree" if ours_letter == theirs_letter else "disagree"
    return "disagree"


def json_equal(local: str, reference: str) -> Verdict:
    """Equal JSON values (key order and spacing aside); a reference that is not JSON is
    inconclusive, a local answer that is not JSON disagrees."""
    try:
        theirs = orjson.loads(reference)
    except orjson.JSONDecodeError:
        return "inconclusive"
    try:
        ours = orjson.loads(local)
    except orjson.JSONDecodeError:
        return "disagree"
    return "agree" if ours == theirs else "disagree"


JUDGES: dict[str, Callable[[str, str], Verdict]] = {
    "exact": exact,
    "normalized": normalized,
    "json": json_equal,
}
