"""Feedback from applications: what they know of an answer (a user's thumbs-down, a failed
tool call, a test that passed), posted to `POST /v1/feedback` and kept in the ledger as a
record of its own kind (`kind: feedback`) linked to the request by `feedback_of`. The
request's record is never changed.

A feedback item is `{request_id, score | label, comment?, source?}`: `score` in [0, 1] (0.5
and above: good), or a `label` (good ones: good, correct, positive, pass, up, thumbs_up,
accepted; bad ones: bad, incorrect, wrong, negative, fail, down, thumbs_down, rejected; any
other label is kept as said and counts as neither). The batch form is `{"feedback": [...]}`.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from router.errors import APIError
from router.records import iso_time

Verdict = Literal["good", "bad", "neither"]

_GOOD = frozenset(
    {"good", "correct", "positive", "pass", "passed", "up", "thumbs_up", "accepted", "1"}
)
_BAD = frozenset(
    {"bad", "incorrect", "wrong", "negative", "fail", "failed", "down", "thumbs_down", "rejected"}
)
_FIELDS = frozenset({"request_id", "score", "label", "comment", "source"})
MAX_ID, MAX_LABEL, MAX_SOURCE, MAX_COMMENT = 128, 64, 64, 1000


@dataclass(frozen=True, slots=True)
class Item:
    request_id: str
    score: float | None
    label: str | None
    comment: str | None
    source: str | None

    @property
    def verdict(self) -> Verdict:
        if self.score is not None:
            return "good" if self.score >= 0.5 else "bad"
        label = (self.label or "").strip().lower().replace("-", "_").replace(" ", "_")
        return "good" if label in _GOOD else "bad" if label in _BAD else "neither"


@dataclass(slots=True)
class FeedbackRecord:
    """One item of feedback, as the ledger keeps it (`kind: feedback`). What the request was
    (route, the tier that answered, whether that was the in-process tier) is copied from its
    record, so the audit groups and judges it without joining the two."""

    feedback_of: str
    team: str
    key_id: str | None
    verdict: Verdict
    score: float | None
    label: str | None
    comment: str | None
    source: str | None
    route: str | None
    final_tier: str | None
    local: bool  # the answer came from an in-process tier
    request_id: str = field(default_factory=lambda: f"feedback-{secrets.token_hex(10)}")
    ts: str = field(default_factory=lambda: iso_time(time.time()))
    kind: str = "feedback"


def _bad(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_feedback")


def _text(value: object, param: str, most: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"'{param}' must be a string", param)
    if len(value) > most:
        raise _bad(f"'{param}' is longer than {most} characters", param)
    return value


def _item(value: object, where: str) -> Item:
    if not isinstance(value, dict):
        raise _bad("a feedback item must be an object", where)
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise _bad(f"unknown field '{unknown[0][:40]}' in feedback", f"{where}.{unknown[0][:40]}")
    request_id = _text(value.get("request_id"), f"{where}.request_id", MAX_ID)
    if not request_id:
        raise _bad("'request_id' is required: the answer's x-request-id", f"{where}.request_id")
    score = value.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise _bad("'score' must be a number from 0 to 1", f"{where}.score")
        if not math.isfinite(score) or not 0 <= score <= 1:
            raise _bad("'score' must be a number from 0 to 1", f"{where}.score")
    label = _text(value.get("label"), f"{where}.label", MAX_LABEL)
    if score is None and not label:
        raise _bad("feedback needs a 'score' (0 to 1) or a 'label'", where)
    return Item(
        request_id,
        None if score is None else float(score),
        label,
        _text(value.get("comment"), f"{where}.comment", MAX_COMMENT),
        _text(value.get("source"), f"{where}.source", MAX_SOURCE),
    )


def parse(body: object, most: int) -> tuple[list[Item], bool]:
    """The items of a body, and whether it was the batch form; 400 naming the field when
    one is wrong (nothing of a batch is stored unless all of it is right)."""
    if isinstance(body, dict) and "feedback" in body:
        if set(body) != {"feedback"}:
            raise _bad('the batch form is {"feedback": [...]} and nothing else', "feedback")
        items = body["feedback"]
        if not isinstance(items, list) or not items:
            raise _bad("'feedback' must be a non-empty list of items", "feedback")
        if len(items) > most:
            raise _bad(f"at most {most} feedback items in one request", "feedback")
        return [_item(v, f"feedback[{i}]") for i, v in enumerate(items)], True
    return [_item(body, "body")], False


def as_dict(record: FeedbackRecord) -> dict[str, Any]:
    return {
        "id": record.request_id,
        "object": "feedback",
        "request_id": record.feedback_of,
        "verdict": record.verdict,
        "created_at": record.ts,
    }
