"""Features of a prompt (for routers) and of an answer (for acceptance models).

Both are small, generic descriptions that transfer across topics: a router trained on some
MMLU subjects must score subjects it has never seen, where word-level features (TF-IDF)
do no better than chance. Each function returns plain floats in a fixed order (`*_NAMES`)
and costs tens of microseconds for a 2,000-character prompt: the fast scorer and the
scikit-learn estimator call the very same function, so they cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

_ALL = bytes(range(256))
_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS = _UPPER + _UPPER.lower()
_MATH = b"+-*/=^<>%$\\"
# lower-cased; every byte that is not a letter or digit becomes a space: tokens are the
# alphanumeric runs (bytes >= 128, i.e. non-ASCII text, stay part of words)
_TOKENS = bytes(
    (c + 32 if c in _UPPER else c) if c in _LETTERS + _DIGITS or c >= 128 else 32 for c in _ALL
)
# digits stay, everything else becomes a space: the number runs
_NUMBER_RUNS = bytes(c if c in _DIGITS else 32 for c in _ALL)
# one byte per character class, counted with bytes.count (memchr speed): d(igit), u(pper),
# l(ower), m(ath), and x for everything else (the classes do not overlap)
_CLASSES = bytes(
    ord(
        "d"
        if c in _DIGITS
        else "u"
        if c in _UPPER
        else "l"
        if c in _LETTERS
        else "m"
        if c in _MATH
        else "x"
    )
    for c in _ALL
)
_OPTION_LETTERS = frozenset(b"ABCDEFGHIJ")
_OPTION_MARKS = frozenset(b".)")
_NUMBER_WORD, _COMPARE_WORD, _RATIO_WORD, _NEGATION_WORD = 1, 2, 3, 4
_CUES: dict[bytes, int] = {
    **dict.fromkeys(
        b"one two three four five six seven eight nine ten eleven twelve twenty thirty forty "
        b"fifty hundred thousand million half twice double triple third quarter dozen".split(),
        _NUMBER_WORD,
    ),
    **dict.fromkeys(b"more less fewer than times each every per".split(), _COMPARE_WORD),
    **dict.fromkeys(b"percent ratio rate average".split(), _RATIO_WORD),
    **dict.fromkeys(b"not except least false incorrect".split(), _NEGATION_WORD),
}

PROMPT_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_sentences",
    "digit_share",
    "log_numbers",
    "math_share",
    "upper_share",
    "mean_word_len",
    "log_options",
    "log_stem_chars",
    "option_chars_share",
    "negation",
    "statements",
    "questions",
    "log_number_words",
    "ratio_cues",
    "log_compare_cues",
    "code",
)


def _log(value: float) -> float:
    return math.log1p(value)


def _options(text: bytes) -> tuple[int, int]:
    """Lines that look like options ("A. ...", "B) ..."), and where the first one starts."""
    count, stem, offset = 0, len(text), 0
    for line in text.split(b"\n"):
        if len(line) > 1 and line[0] in _OPTION_LETTERS and line[1] in _OPTION_MARKS:
            count += 1
            stem = min(stem, offset)
        offset += len(line) + 1
    return count, stem


def prompt_features(prompt: str) -> list[float]:
    """Shape of a prompt: length, numbers and symbols, cue words, multiple-choice layout.

    Byte-level `translate`/`count`/`split` and one dict lookup per word, no regular
    expressions: a few tens of microseconds for 2,000 characters.
    """
    text = prompt.encode("utf-8", "replace")
    size = len(text) or 1
    tokens = text.translate(_TOKENS).split()
    n_tokens = len(tokens) or 1
    cues = [*filter(None, map(_CUES.get, tokens))]  # the few cue words, as their kinds
    classes = text.translate(_CLASSES)
    upper = classes.count(b"u")
    letters = upper + classes.count(b"l")
    digits = classes.count(b"d")
    questions = text.count(b"?")
    options, stem = _options(text)
    # (the `if`s skip a scan whose answer is already known: the values are the same)
    return [
        _log(len(text)),
        _log(len(tokens)),
        _log(text.count(b"\n")),
        _log(text.count(b". ") + (text.count(b"? ") if questions else 0)),
        digits / size,
        _log(len(text.translate(_NUMBER_RUNS).split()) if digits else 0),
        classes.count(b"m") / size,
        upper / max(letters, 1),
        letters / n_tokens,
        _log(options),
        _log(stem),
        1.0 - stem / size,
        float(_NEGATION_WORD in cues),
        float(b"Statement 1" in text),
        float(questions),
        _log(cues.count(_NUMBER_WORD)),
        float(_RATIO_WORD in cues or b"%" in text),
        _log(cues.count(_COMPARE_WORD)),
        float(b"`" in text and b"```" in text),
    ]


_DIGITS_DELETED = str.maketrans("", "", "0123456789")

ANSWER_NAMES: tuple[str, ...] = (
    "log_tokens",
    "lp_mean",
    "lp_min",
    "lp_q05",
    "lp_q10",
    "lp_q25",
    "lp_q50",
    "lp_q75",
    "lp_std",
    "lp_first",
    "lp_first3",
    "lp_last5",
    "low_prob_share",
    "truncated",
    "repetition",
    "log_answer_chars",
    "log_answer_digits",
    "answer_is_option",
    "answer_prompt_overlap",
    "answer_lines",
)

_LOW_PROB = math.log(0.5)
_FIRST_LETTER = re.compile(r"\s*\(?([A-J])[.)]?(?:\s|$)")


def _has_options(prompt: str) -> bool:
    return _options(prompt.encode("utf-8", "replace"))[0] > 0


_QUANTILES = np.array([0.05, 0.10, 0.25, 0.50, 0.75])
_LOWER_WORD = re.compile(r"[a-z0-9]+")


def repetition(text: str) -> float:
    """Share of word 3-grams that repeat an earlier one (degenerate loops score high)."""
    words = text.split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)


def answer_features(
    prompt: str, answer: str, logprobs: Sequence[float], finish_reason: str
) -> list[float]:
    """Token-uncertainty quantiles (Gupta et al. 2024) plus what the answer looks like."""
    values = np.asarray(logprobs if len(logprobs) else [0.0], dtype=np.float64)
    q05, q10, q25, q50, q75 = np.quantile(values, _QUANTILES).tolist()
    answer_words = _LOWER_WORD.findall(answer.lower())
    prompt_words = set(_LOWER_WORD.findall(prompt.lower()))
    overlap = (
        sum(word in prompt_words for word in answer_words) / len(answer_words)
        if answer_words
        else 0.0
    )
    digits = len(answer) - len(answer.translate(_DIGITS_DELETED))
    return [
        _log(len(logprobs)),
        float(values.mean()),
        float(values.min()),
        q05,
        q10,
        q25,
        q50,
        q75,
        float(values.std()),
        float(values[0]),
        float(values[:3].mean()),
        float(values[-5:].mean()),
        float((values < _LOW_PROB).mean()),
        float(finish_reason == "length"),
        repetition(answer),
        _log(len(answer)),
        _log(digits),
        float(_FIRST_LETTER.match(answer) is not None and _has_options(prompt)),
        overlap,
        float(answer.count("\n")),
    ]


def acceptance_features(
    prompt: str, answer: str, logprobs: Sequence[float], finish_reason: str
) -> list[float]:
    """What an acceptance model sees: the answer's features, then the prompt's."""
    return answer_features(prompt, answer, logprobs, finish_reason) + prompt_features(prompt)


ACCEPTANCE_NAMES = ANSWER_NAMES + PROMPT_NAMES
