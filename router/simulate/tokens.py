"""Token counts for a tier a request never called, from the requests that called both.

A candidate policy may send a request to a tier that never saw it (a higher threshold
escalates an answer the local tier kept). What that call would have cost is priced from the
request's recorded token counts, through how the two tiers' counts relate on the requests
of the same ledger where both answered (an escalated request has both; so has a shadow
check of a kept answer, which asked the reference tier — the better teacher, being of the
kind of request a candidate newly escalates): a least-squares
line, count on the other tier = a + b * count on the recorded one (tokenizers differ by a
factor, chat templates by a constant), weighted for scatter that grows with the count. Two
tiers' answers to one prompt differ in length more than their prompts do; the line then
says little beyond the other tier's mean, which is what it should say.

A sum of estimates has an interval: the fit's own uncertainty, which does not shrink however
many estimates share it, each request's scatter about the line, and the line's own error on
requests of another shape (measured on the pairs of each size, a power of two apart: the
requests estimated are those that were kept, not those that escalated and taught it). With
fewer than three pairs the counts are taken as they are (a=0, b=1) and the interval is
unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

_MIN_PAIRS = 3
_MIN_PER_SIZE = 5  # pairs of one size before the line's error on them counts in `shape`
FEW_PAIRS = 30  # fewer, and the report warns that the estimates are rough


@dataclass(slots=True)
class _Sums:
    """Weighted sums of pairs (x: the recorded tier's count, y: the other's), each pair
    weighted 1/x: counts scatter in proportion to their size (a long prompt's two counts
    differ by more tokens than a short one's)."""

    n: int = 0
    w: float = 0.0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    xy: float = 0.0
    yy: float = 0.0
    # by size (x's power of two): [pairs, their x, their y] — how far the line is off on
    # requests of another shape than the bulk of the pairs (`Line.shape`)
    sizes: dict[int, list[float]] = field(default_factory=dict)

    def add(self, x: float, y: float) -> None:
        w = 1.0 / max(x, 1.0)
        size = self.sizes.setdefault(int(max(x, 1.0)).bit_length(), [0, 0.0, 0.0])
        size[0] += 1
        size[1] += x
        size[2] += y
        self.n += 1
        self.w += w
        self.x += w * x
        self.y += w * y
        self.xx += w * x * x
        self.xy += w * x * y
        self.yy += w * y * y


@dataclass(frozen=True, slots=True)
class Line:
    """y = a + b x, fitted by weighted least squares on n pairs. `variance` is the scatter
    per recorded token (a request's own scatter is variance * x); mean_x, weight and sxx say
    how sure the fit is, and how far an estimate's x is from what it was fitted on."""

    a: float
    b: float
    n: int
    variance: float | None  # None: unknown (too few pairs)
    mean_x: float = 0.0
    weight: float = 0.0
    sxx: float = 0.0
    # the line's relative error on the sum of each size's pairs (RMS); with too few pairs of
    # any one size to say, one request's relative scatter
    shape: float = 0.0

    @classmethod
    def of(cls, sums: _Sums | None) -> Line:
        if sums is None or sums.n < _MIN_PAIRS:
            return cls(0.0, 1.0, 0 if sums is None else sums.n, None)
        mean_x, mean_y = sums.x / sums.w, sums.y / sums.w
        sxx = sums.xx - sums.w * mean_x * mean_x
        sxy = sums.xy - sums.w * mean_x * mean_y
        syy = sums.yy - sums.w * mean_y * mean_y
        b = sxy / sxx if sxx > 0 else 0.0
        residual = max(syy - b * sxy, 0.0) / (sums.n - 2)
        line = cls(mean_y - b * mean_x, b, sums.n, residual, mean_x, sums.w, sxx)
        return replace(line, shape=line.shape_error(sums))

    def shape_error(self, sums: _Sums) -> float:
        """The line's relative error on the sum of each size's pairs (RMS), or with too few
        pairs of any one size to say, one request's relative scatter about it."""
        errors = [
            (n, (self.a * n + self.b * x - y) / y)
            for n, x, y in sums.sizes.values()
            if n >= _MIN_PER_SIZE and y > 0
        ]
        if errors:
            return math.sqrt(sum(n * e * e for n, e in errors) / sum(n for n, _ in errors))
        total_x = sum(x for _, x, _ in sums.sizes.values())
        total_y = sum(y for _, _, y in sums.sizes.values())
        if total_y <= 0 or self.variance is None:
            return 0.0
        return math.sqrt(self.variance * total_x / sums.n) / (total_y / sums.n)

    def __call__(self, x: float) -> int:
        return max(0, round(self.a + self.b * x))

    def sum_variance(self, m: int, total_x: float) -> float | None:
        """The variance of a sum of `m` estimates whose recorded counts add up to `total_x`:
        the fit's uncertainty (shared by all of them), each one's own scatter, and how far
        off the line is on requests of another shape (its error on the pairs of each size:
        the requests estimated are not the ones that taught it — those were escalated)."""
        if self.variance is None:
            return None
        if m == 0:
            return 0.0
        shift = (total_x - m * self.mean_x) ** 2 / self.sxx if self.sxx > 0 else 0.0
        fitted = self.variance * (m * m / self.weight + shift + max(total_x, m))
        return fitted + (self.shape * (self.a * m + self.b * total_x)) ** 2


class TokenModel:
    """Learns, per (recorded tier, unrecorded tier), how their prompt and completion counts
    relate; estimates the unrecorded tier's counts for one request."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str, str], _Sums] = {}
        self._lines: dict[tuple[str, str, str], Line] = {}

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
                    self._of(source, target, "prompt").add(xp, yp)
                    self._of(source, target, "completion").add(xc, yc)
        self._lines.clear()

    def _of(self, source: str, target: str, kind: str) -> _Sums:
        found = self._sums.get((source, target, kind))
        if found is None:
            found = self._sums[(source, target, kind)] = _Sums()
        return found

    def line(self, source: str, target: str, kind: str) -> Line:
        key = (source, target, kind)
        found = self._lines.get(key)
        if found is None:
            found = self._lines[key] = Line.of(self._sums.get(key))
        return found

    def estimate(self, source: str, target: str, prompt: int, completion: int) -> tuple[int, int]:
        """`target`'s (prompt, completion) tokens for a request `source` counted so."""
        return (
            self.line(source, target, "prompt")(prompt),
            self.line(source, target, "completion")(completion),
        )

    def as_record(self) -> list[dict[str, object]]:
        """What the report says it priced unrecorded tiers by."""
        rows = []
        for source, target, _ in sorted(k for k in self._sums if k[2] == "prompt"):
            prompt = self.line(source, target, "prompt")
            completion = self.line(source, target, "completion")
            rows.append(
                {
                    "from": source,
                    "to": target,
                    "pairs": prompt.n,
                    "prompt": f"{prompt.a:.1f} + {prompt.b:.3f} x",
                    "completion": f"{completion.a:.1f} + {completion.b:.3f} x",
                    "completion_sd": (
                        None
                        if completion.variance is None
                        else round(math.sqrt(completion.variance), 2)
                    ),
                }
            )
        return rows
