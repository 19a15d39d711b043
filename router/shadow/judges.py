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


# The LLM judge's prompt. Never edit a version that has shipped: records name the version
# they were judged by; add a new one and point LLM_JUDGE at it.
LLM_JUDGE_PROMPTS = {
    "llm-judge-v1": (
        "You compare two answers to the same question.\n\n"
        "Question:\n{question}\n\n"
        "Reference answer:\n{reference}\n\n"
        "Candidate answer:\n{candidate}\n\n"
        "Does the candidate answer give the same final answer as the reference answer? "
        "Reply with one word: yes or no."
    )
}
LLM_JUDGE = "llm-judge-v1"
_MAX_CHARS = 4000  # of each text shown to the judge


def llm_judge_prompt(question: str, reference: str, candidate: str) -> str:
    return LLM_JUDGE_PROMPTS[LLM_JUDGE].format(
        question=question[:_MAX_CHARS],
        reference=reference[:_MAX_CHARS],
        candidate=candidate[:_MAX_CHARS],
    )


def read_judgement(text: str) -> Verdict:
    """The judge's first word: yes agrees, no disagrees, anything else is inconclusive."""
    words = text.strip().split()
    first = words[0].strip(".,!:;\"'*").lower() if words else ""
    return "agree" if first == "yes" else "disagree" if first == "no" else "inconclusive"
