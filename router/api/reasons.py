"""Why a request went where it did, in one line: the `x-cascade-reason` header (whole and
streamed answers alike) — the rule that moved it, what its budget did, the pre-router's
skip, and each tier tried: skipped for a feature it lacks, failed, escalated on its
confidence or output check, or kept."""

from __future__ import annotations

from collections.abc import Sequence

from router.records import Attempt
from router.routing import Decision

_MOST = 400  # characters of the header at most


def _confidence(attempt: Attempt) -> str:
    found = attempt.confidence or {}
    value, threshold = found.get("value"), found.get("threshold")
    if not isinstance(value, int | float):
        return ""
    method = found.get("method", "confidence")
    if isinstance(threshold, int | float):
        compare = ">=" if value >= threshold else "<"
        return f" ({method} {value:.2f} {compare} {threshold:g})"
    return f" ({method} {value:.2f})"


def _attempt(attempt: Attempt) -> str:
    tier, outcome = attempt.tier, attempt.outcome
    error = attempt.error or ""
    if outcome == "skipped":
        said = f"skipped: does not serve {error.removeprefix('skipped: ')}"
    elif outcome == "escalated" and attempt.output_check not in (None, "valid"):
        said = "escalated: its answer failed the output check"
    elif outcome == "escalated":
        said = f"escalated{_confidence(attempt)}"
    elif outcome == "accepted":
        said = f"kept its answer{_confidence(attempt)}"
    elif outcome == "degraded":
        said = "answer served degraded: no tier after it answered"
    elif "not configured" in error:
        said = "not configured"
    else:
        said = outcome
    return f"{tier} {said}"


def reason(
    decision: Decision,
    attempts: Sequence[Attempt],
    *,
    live_tier: str | None = None,
    budget: str = "ok",
    budget_share: float | None = None,
    cache_hit: bool = False,
) -> str:
    """The header's value: ASCII, `; `-separated, at most 400 characters."""
    parts: list[str] = []
    if decision.rule is not None:
        parts.append(f"rule '{decision.rule}' chose {decision.route}")
    if budget != "ok":
        spent = f" at {budget_share:.0%} of budget spent" if budget_share is not None else ""
        parts.append(f"budget {budget}{spent}")
    verdict = decision.prerouter
    if verdict is not None and verdict.skip and decision.plan.steps:
        first = decision.plan.steps[0].tier
        parts.append(
            f"pre-router skipped {first} ({verdict.name} {verdict.score:.2f} < "
            f"{verdict.threshold:g})"
        )
    if cache_hit:
        parts.append("served from the response cache")
    parts += [_attempt(attempt) for attempt in attempts]
    if live_tier is not None:
        parts.append(f"{live_tier} streaming its answer live (kept as it comes)")
    text = "; ".join(parts) or f"route {decision.route}"
    text = text.encode("ascii", "backslashreplace").decode()
    return text if len(text) <= _MOST else text[: _MOST - 3] + "..."
