"""Token counts for a tier a request never called, from the requests that called both.

A candidate policy may send a request to a tier that never saw it (a higher threshold
escalates an answer the local tier kept). What that call would have cost is priced from the
request's recorded token counts, scaled by how the two tiers' counts relate on the requests
of the same ledger where both answered (an escalated request has both): the ratio of their
sums (a ratio estimator), with the spread of single requests about it, so that a sum of
estimates carries its own interval. With no such pairs the counts are taken as they are
(ratio 1) and the spread is unknown (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Sums:
    n: int = 0
    x: float = 0.0  # the recorded tier's count
    y: float = 0.0  # the other tier's count
    xx: float = 0.0
    xy: float = 0.0
    yy: float = 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        self.x += x
        self.y += y
        self.xx += x * x
        self.xy += x * y
        self.yy += y * y

    @property
    def ratio(self) -> float:
        return self.y / self.x if self.x > 0 else 1.0

    @property
    def variance(self) -> float | None:
        """The spread of one request's count about `ratio` times its recorded count."""
        if self.n < 2 or self.x <= 0:
            return None
        r = self.ratio
        residual = self.yy - 2 * r * self.xy + r * r * self.xx
        return max(residual, 0.0) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int
    prompt_variance: float | None  # of prompt_tokens; None: unknown
    completion_variance: float | None


class TokenModel:
    """Learns, per (recorded tier, unrecorded tier), how their prompt and completion counts
    relate; estimates the unrecorded tier's counts for one request."""

    def __init__(self) -> None:
        self._prompt: dict[tuple[str, str], _Sums] = {}
        self._completion: dict[tuple[str, str], _Sums] = {}

    def learn(self, answered: list[tuple[str, int, int]]) -> None:
        """One request's answered attempts: (tier, prompt tokens, completion tokens)."""
        for i, (tier, prompt, completion) in enumerate(answered):
            for other, prompt_other, completion_other in answered[i + 1 :]:
                if other == tier:
                    continue
                for source, target, xp, yp, xc, yc in (
                    (tier, other, prompt, prompt_other, completion, completion_other),
                    (other, tier, prompt_other, prompt, completion_other, completion),
                ):
                    self._of(self._prompt, source, target).add(xp, yp)
                    self._of(self._completion, source, target).add(xc, yc)

    @staticmethod
    def _of(table: dict[tuple[str, str], _Sums], source: str, target: str) -> _Sums:
        found = table.get((source, target))
        if found is None:
            found = table[(source, target)] = _Sums()
        return found

    def pairs(self, source: str, target: str) -> int:
        found = self._prompt.get((source, target))
        return 0 if found is None else found.n

    def estimate(self, source: str, target: str, prompt: int, completion: int) -> Estimate:
        p = self._prompt.get((source, target)) or _Sums()
        c = self._completion.get((source, target)) or _Sums()
        return Estimate(
            max(0, round(p.ratio * prompt)),
            max(0, round(c.ratio * completion)),
            p.variance,
            c.variance,
        )

    def as_record(self) -> list[dict[str, object]]:
        """What the report says it priced unrecorded tiers by."""
        rows = []
        for (source, target), p in sorted(self._prompt.items()):
            c = self._completion[(source, target)]
            rows.append(
                {
                    "from": source,
                    "to": target,
                    "pairs": p.n,
                    "prompt_ratio": round(p.ratio, 4),
                    "completion_ratio": round(c.ratio, 4),
                    "completion_sd": None
                    if c.variance is None
                    else round(math.sqrt(c.variance), 2),
                }
            )
        return rows
