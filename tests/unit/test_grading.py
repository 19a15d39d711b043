from __future__ import annotations

import pytest

from classifiers.grading import extract_letter, extract_number, grade, normalise


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("She makes 9 * 2 = $18 a day.\nAnswer: 18", 18.0),
        ("The answer is 1,234.", 1234.0),
        ("Answer: $5.50", 5.5),
        ("First 3 then 4, so 7 in total", 7.0),
        ("Answer: -3", -3.0),
        ("no numbers here", None),
    ],
)
def test_extract_number(answer: str, value: float | None) -> None:
    assert extract_number(answer) == value


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("(C) because...", "C"),
        ("D. Kidney", "D"),
        ("The correct answer is A) Bladder", "A"),
        ("I think the answer is: C", "C"),
        ("Options B) and C) are wrong; A is right", "B"),  # first marked letter, deterministic
        ("I do not know", None),
    ],
)
def test_extract_letter(answer: str, letter: str | None) -> None:
    assert extract_letter(answer) == letter


def test_normalise() -> None:
    assert normalise("The  Beatles!") == "beatles"


@pytest.mark.parametrize(
    ("kind", "answer", "gold", "correct"),
    [
        ("numeric", "Answer: 18", ("18",), True),
        ("numeric", "Answer: 18.0", ("18",), True),
        ("numeric", "Answer: 17", ("18",), False),
        ("letter", "B. Kidney", ("B",), True),
        ("letter", "A", ("B",), False),
        ("text", "It was December 1972.", ("14 December 1972 UTC", "December 1972"), True),
        ("text", "In 1973", ("December 1972",), False),
        ("text", "Bobby Scottish", ("Bobby Scott",), False),  # whole words only
    ],
)
def test_grade(kind: str, answer: str, gold: tuple[str, ...], correct: bool) -> None:
    assert grade(kind, answer, gold) is correct  # type: ignore[arg-type]
