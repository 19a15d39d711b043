"""The first pass of a simulation: what the ledger knows beyond each request's own record.

Shadow checks (`kind: shadow`) say whether a local answer agreed with the reference tier,
whether the local tier's answer was served, rejected or never asked for (`local_outcome`),
and carry the prompt's feature vector (classifiers/features.py), on which a new classifier
can be scored; feedback (`kind: feedback`) says what the application thought of the answer
it got. Both are kept by the request they speak of, so memory grows with the evidence, not
with the traffic. Requests that called two tiers teach the token model (tokens.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.audit.aggregate import ANSWERED
from router.simulate.tokens import TokenModel

_TEAM = re.compile(rb'"team"\s*:\s*"((?:[^"\\]|\\.)*)"')
_TS = re.compile(rb'"ts"\s*:\s*"([^"]*)"')
_BUDGET_SAMPLE = 8  # one request in this many counted for dealing budget windows out


@dataclass(frozen=True, slots=True)
class Check:
    """A shadow check of one request's local answer."""

    verdict: str  # agree | disagree | inconclusive | error
    local_outcome: str  # accepted | escalated | skipped
    vector: tuple[float, ...] | None  # the prompt's features, when the check carried them


@dataclass(slots=True)
class Evidence:
    checks: dict[str, Check] = field(default_factory=dict)  # by the checked request's id
    feedback: dict[str, str] = field(default_factory=dict)  # good | bad | neither, by id
    feedback_local: set[str] = field(default_factory=set)  # said of a local tier's answer
    tokens: TokenModel = field(default_factory=TokenModel)
    requests: int = 0
    # requests in each budget window of the teams with limits (`team<TAB>period`), sampled
    budgets: Counter[str] = field(default_factory=Counter)

    def add(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "shadow":
            self._check(record)
        elif kind == "feedback":
            of = record.get("feedback_of")
            if isinstance(of, str):
                self.feedback[of] = str(record.get("verdict") or "neither")
                if record.get("local"):
                    self.feedback_local.add(of)
        elif kind is None:
            attempts = record.get("attempts") or ()
            answered = [
                (str(a["tier"]), int(a["prompt_tokens"]), int(a["completion_tokens"]))
                for a in attempts
                if a.get("outcome") in ANSWERED
            ]
            if len(answered) > 1:
                self.tokens.learn(answered)

    def _check(self, record: dict[str, Any]) -> None:
        of = record.get("shadow_of")
        if not isinstance(of, str):
            return
        vector = (record.get("features") or {}).get("prompt")
        found = (
            tuple(float(v) for v in vector)
            if isinstance(vector, list) and all(isinstance(v, int | float) for v in vector)
            else None
        )
        local = record.get("local_prompt_tokens"), record.get("local_completion_tokens")
        reference = record.get("prompt_tokens") or 0
        if record.get("verdict") != "error" and isinstance(local[0], int) and reference > 0:
            # a kept local answer and the reference's to the same prompt: a pair of counts
            # from the requests a candidate would escalate, which escalated ones are not
            self.tokens.learn(
                [
                    (str(record.get("local_tier")), local[0], int(local[1] or 0)),
                    (
                        str(record.get("reference_tier")),
                        int(reference),
                        int(record.get("completion_tokens") or 0),
                    ),
                ]
            )
        self.checks[of] = Check(
            str(record.get("verdict") or "error"),
            str(record.get("local_outcome") or "accepted"),
            found,
        )


_LEARN_FIRST = 50_000  # requests of two tiers the token model learns from before thinning


def team_of(body: bytes) -> str | None:
    """A record's team, read from its bytes without parsing it (the first `team` key is the
    record's own: records are written with `team` before any nested object)."""
    found = _TEAM.search(body)
    return None if found is None else found.group(1).decode()


def budget_of(body: bytes, periods: Mapping[str, int]) -> str | None:
    """`team<TAB>period` of a request of a team with limits: the budget window it falls in
    (`periods`: a team's length of `ts` that names it, 10 for a day, 7 for a month); None
    for every other request."""
    team = team_of(body)
    if team is None or team not in periods:
        return None
    found = _TS.search(body)
    stamp = found.group(1).decode() if found is not None else ""
    return f"{team}\t{stamp[: periods[team]]}"


def gather(bodies: Iterator[bytes], periods: Mapping[str, int] | None = None) -> Evidence:
    """The evidence in `bodies`, and (one in 8 sampled) how many requests fall in each
    budget window of the teams in `periods` (budget_of). Only what can hold evidence is
    parsed: records with a kind, and requests that called more than one tier (a byte scan
    tells them from the rest) - of those, the first 50,000, then every second, every
    fourth, ... (the lines they give are settled long before)."""
    evidence = Evidence()
    loads = orjson.loads
    seen = stride = 1
    for body in bodies:
        if b'"kind"' in body:
            evidence.add(loads(body))
            continue
        evidence.requests += 1
        if periods and evidence.requests % _BUDGET_SAMPLE == 0:
            window = budget_of(body, periods)
            if window is not None:
                evidence.budgets[window] += _BUDGET_SAMPLE
        if body.count(b'"tier"') > 1:
            if seen % stride == 0:
                evidence.add(loads(body))
            seen += 1
            if seen > _LEARN_FIRST * stride:
                stride *= 2
    return evidence
