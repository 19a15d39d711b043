from __future__ import annotations

import pytest

from router.backends.stops import StopMatcher


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = ""
    for piece in pieces:
        out += matcher.feed(piece)
        if matcher.stopped:
            return out, True
    return out + matcher.flush(), False


@pytest.mark.parametrize(
    ("stops", "pieces", "expected", "stopped"),
    [
        ((), ["a", "b"], "ab", False),
        (("\n",), ["one", " two\nthree"], "one two", True),
        (("END",), ["abc E", "N", "D more"], "abc ", True),  # a stop split over three pieces
        (("END",), ["abc E", "N", "x"], "abc ENx", False),  # held text released when it is not
        (("ab", "b"), ["xab"], "x", True),  # the earliest match wins
        (("END",), ["abc EN"], "abc EN", False),  # generation ended: held text flushed
    ],
)
def test_stop_matching(
    stops: tuple[str, ...], pieces: list[str], expected: str, stopped: bool
) -> None:
    assert run(stops, pieces) == (expected, stopped)
