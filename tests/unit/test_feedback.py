"""Feedback items: what is accepted, what is refused (400 naming the field), and how a score
or label becomes good, bad or neither."""

from __future__ import annotations

import pytest

from router.errors import APIError
from router.feedback import parse


def test_one_item_and_a_batch() -> None:
    items, batch = parse({"request_id": "abc", "score": 0.5, "source": "ci"}, 10)
    assert not batch and items[0].verdict == "good" and items[0].source == "ci"
    items, batch = parse(
        {
            "feedback": [
                {"request_id": "a", "label": "Thumbs-Down"},
                {"request_id": "b", "score": 0},
            ]
        },
        10,
    )
    assert batch and [i.verdict for i in items] == ["bad", "bad"]
    assert parse({"request_id": "a", "label": "meh"}, 10)[0][0].verdict == "neither"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"request_id": "a"}, "body"),  # neither score nor label
        ({"score": 1}, "body.request_id"),
        ({"request_id": "a", "score": 1.5}, "body.score"),
        ({"request_id": "a", "score": float("nan")}, "body.score"),
        ({"request_id": "a", "score": True}, "body.score"),
        ({"request_id": "a", "label": "x" * 65}, "body.label"),
        ({"request_id": "a" * 129, "label": "good"}, "body.request_id"),
        ({"request_id": "a", "label": "good", "comment": "c" * 1001}, "body.comment"),
        ({"request_id": "a", "label": "good", "model": "x"}, "body.model"),
        ({"request_id": 7, "label": "good"}, "body.request_id"),
        ([1, 2], "body"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [{"request_id": "a", "label": "good"}], "extra": 1}, "feedback"),
        ({"feedback": [{"request_id": "a", "label": "good"}] * 11}, "feedback"),
        ({"feedback": [{"request_id": "a", "label": "good"}, "x"]}, "feedback[1]"),
    ],
)
def test_a_wrong_item_is_a_400_naming_the_field(body: object, param: str) -> None:
    with pytest.raises(APIError) as refused:
        parse(body, 10)
    assert refused.value.status == 400 and refused.value.param == param
