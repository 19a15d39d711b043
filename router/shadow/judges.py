"""Judges: does the local answer say what the reference tier's answer says?

Each returns `agree`, `disagree`, or `inconclusive` (the reference gave nothing to compare
with). They are for answers that can be compared mechanically — short answers, numbers,
options, structured output; free prose needs an LLM judge (not built yet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import orjson

from classifiers.grading import extract_letter, extract_number, normalise

Verdict = Literal["agree", "disagree", "inconclusive"]
_SHORT_WORDS = 6  # an answer this short may appear inside the other one
_OPTION = re.compile(r"^\s*\(?([A-E])\)?[.:]?\s*$")  # a reference that is only a letter
_ANSWER_OPTION = re.compile(r"\banswer(?:\s+is)?\s*:?\s*\(?([A-E])\)?(?:[.\s]|$)")


def exact(local: str, reference: str) -> Verdict:
    if not reference.strip():
        return "inconclusive"
    return "agree" if local.strip() == reference.strip() else "disagree"


def normalized(local: str, reference: str) -> Verdict:
    """Compared by what the reference answer is: an option letter ("B", "(B)", "The answer
    is B") against the local answer's letter; a short answer with a number ("1,200",
    "Answer: 7") against the local answer's final number (GSM8K style); else the same text
    once case, punctuation, articles and spacing are evened out, or the shorter (≤ 6 words,
    e.g. "Paris") said whole in the longer."""
    if letter := _OPTION.match(reference) or _ANSWER_OPTION.search(reference):
        return "agree" if extract_letter(local) == letter.group(1) else "disagree"
    theirs = normalise(reference)  # (an option "A" would normalise away as an article)
    if not theirs:
        return "inconclusive"
    theirs_number = extract_number(reference)
    if theirs_number is not None and len(theirs.split()) <= _SHORT_WORDS:
        ours_number = extract_number(local)
        same = ours_number is not None and abs(ours_number - theirs_number) < 1e-9
        return "agree" if same else "disagree"
    ours = normalise(local)
    if ours == theirs:
        return "agree"
    short, long = sorted((ours, theirs), key=len)
    if short and len(short.split()) <= _SHORT_WORDS and f" {short} " in f" {long} ":
        return "agree"
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
