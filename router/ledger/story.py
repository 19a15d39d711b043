"""A decision record as a person reads it (`cascade ledger show`, `cascade ledger tail`):
who asked for what, where the policy sent it and why, each tier tried and how it went, what
the client got and what it cost. Works on the JSON of a record of any version: a field a
record lacks is left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.audit.formats import money as usd  # one way to print money everywhere

_OUTCOMES = {
    "accepted": "answered",
    "escalated": "escalated",
    "error": "failed",
    "timeout": "timed out",
    "shed": "shed (its queue was full)",
    "degraded": "answered, degraded",
    "client_gone": "stopped: the client left",
    "skipped": "skipped",
}


def _attempt(index: int, attempt: Mapping[str, Any]) -> list[str]:
    outcome = str(attempt.get("outcome", "accepted"))
    where = "local" if attempt.get("local") else str(attempt.get("model", ""))
    head = (
        f"  {index}. {attempt.get('tier')} ({where}): {_OUTCOMES.get(outcome, outcome)}"
        f" after {float(attempt.get('latency_ms', 0)):,.0f} ms"
    )
    lines = [head]
    details = []
    confidence = attempt.get("confidence")
    if isinstance(confidence, Mapping) and "value" in confidence:
        value, threshold = float(confidence["value"]), confidence.get("threshold")
        details.append(
            f"confidence {value:.2f} by {confidence.get('method')}"
            + (f", threshold {float(threshold):.2f}" if threshold is not None else "")
        )
    if attempt.get("error"):
        details.append(str(attempt["error"]))
    if attempt.get("output_check"):
        details.append(f"output check: {attempt['output_check']}")
    if float(attempt.get("queued_ms") or 0) > 0:
        details.append(f"waited {float(attempt['queued_ms']):,.0f} ms for a slot")
    if attempt.get("retries"):
        details.append(f"{attempt['retries']} retries")
    if attempt.get("repair"):
        details.append(f"continued a broken stream ({attempt['repair']})")
    if outcome != "skipped":
        tokens = (
            f"{attempt.get('prompt_tokens', 0)} in + {attempt.get('completion_tokens', 0)} out "
            f"tokens ({attempt.get('usage_source', 'counted')}), {usd(attempt.get('cost_usd', 0))}"
        )
        details.append(tokens)
    lines += [f"     {detail}" for detail in details]
    return lines


def story(record: Mapping[str, Any]) -> str:
    """The record as a few readable lines."""
    kind = record.get("kind")
    if kind is not None:  # a summary record (refusals per second, feedback, ...)
        return f"{record.get('ts', '')} {kind} record: {dict(record)}"
    lines = [*_asked(record), *_decided(record)]
    attempts = record.get("attempts") or []
    if attempts:
        lines.append("  tiers tried:")
        for index, attempt in enumerate(attempts, 1):
            lines += _attempt(index, attempt)
    lines += _ended(record)
    return "\n".join(lines)


def _asked(record: Mapping[str, Any]) -> list[str]:
    who = f"team {record.get('team', 'default')}"
    if record.get("key_id"):
        who += f" (key {record['key_id']})"
    if record.get("user"):
        who += f", user {record['user']!r}"
    stream = ", streamed" if record.get("stream") else ""
    return [
        f"request {record.get('request_id')} at {record.get('ts')}",
        f"  {record.get('endpoint')}{stream}: {who} asked for {record.get('requested_model')!r}",
    ]


def _decided(record: Mapping[str, Any]) -> list[str]:
    route = record.get("route")
    where = f"  route {route}" if route else "  no route"
    if record.get("rule"):
        where += f" (rule {record['rule']})"
    where += f", policy {record.get('policy_version')}"
    if record.get("tags"):
        where += f", tags {', '.join(record['tags'])}"
    lines = [where]
    if record.get("reason"):
        lines.append(f"  why: {record['reason']}")
    classifier = record.get("classifier")
    if isinstance(classifier, Mapping):
        skipped = "skipped the first step" if classifier.get("skipped_first_step") else "kept it"
        lines.append(
            f"  pre-router {classifier.get('name')}: score {float(classifier.get('score', 0)):.2f}"
            f", {skipped}"
        )
    budget = record.get("budget")
    if isinstance(budget, Mapping):
        share = budget.get("share")
        lines.append(
            f"  budget: {budget.get('decision')}"
            + (f" at {100 * float(share):.0f}% spent" if share is not None else "")
        )
    if record.get("cache"):
        lines.append(f"  cache: {record['cache']}")
    return lines


def _ended(record: Mapping[str, Any]) -> list[str]:
    outcome = f"  {record.get('status', 'ok')} (HTTP {record.get('http_status', 200)})"
    if record.get("final_tier"):
        outcome += f" from {record['final_tier']} ({record.get('final_model')})"
    outcome += f" in {float(record.get('latency_ms', 0)):,.0f} ms"
    lines = [outcome]
    if record.get("error"):
        lines.append(f"  error: {record['error']}")
    money = f"  cost {usd(record.get('cost_usd', 0))}"
    saved = float(record.get("saved_usd") or 0)
    if saved > 0:
        money += (
            f", saved {usd(saved)} against {usd(record.get('counterfactual_cost_usd', 0))} "
            "on the reference tier"
        )
    if record.get("cache_saved_usd"):
        money += f", the cache saved {usd(record['cache_saved_usd'])}"
    lines.append(money)
    if record.get("prompt"):
        lines.append(f"  prompt: {record['prompt']!r}")
    return lines


def one_line(record: Mapping[str, Any]) -> str:
    """A record in one line (`cascade ledger tail`)."""
    if record.get("kind") is not None:
        return f"{record.get('ts')} {record['kind']}"
    tiers = ">".join(
        f"{a.get('tier')}:{str(a.get('outcome', ''))[:3]}" for a in record.get("attempts") or []
    )
    return (
        f"{record.get('ts')} {record.get('request_id')} {record.get('team')} "
        f"{record.get('route') or '-'} {record.get('status')} {tiers or '-'} "
        f"{usd(float(record.get('cost_usd') or 0))} {float(record.get('latency_ms', 0)):.0f}ms "
        f"{record.get('reason') or ''}"
    ).rstrip()
