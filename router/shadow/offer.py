"""Which served requests are shadow-checked, and the check each one gets (router/shadow/runner.py
has the three kinds). Plain values in, a `ShadowJob` out: the server draws a sample before a
request runs (`draw`), and after it is settled hands what was served to `job_for`; the offer
itself is a few cheap steps, the check runs later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from router.backends.base import Backend
from router.outcomes import Outcome
from router.policy.model import AcceptanceSpec, Policy, ShadowSpec
from router.records import Attempt, DecisionRecord
from router.request import ClientRequest
from router.routing import Decision
from router.shadow.runner import ShadowJob, ShadowRecord, ShadowRunner, features_of, new_shadow_id

# an LLM judge's call at most, beside the question and both answers (router/shadow/judges.py)
_JUDGE_TEMPLATE_TOKENS, _JUDGE_REPLY_TOKENS = 100, 4

Sample = tuple[ShadowSpec, str]  # the route's spec, and which rate drew it: `ran` or `skipped`


def draw(runner: ShadowRunner, policy: Policy, decision: Decision) -> Sample | None:
    """Whether this request will be shadow-checked (its route's spec, and which rate drew
    it: `rate`, or `prerouter_rate` for a request the pre-router sent past the local tier).
    Drawn before it runs, so a live stream can be gathered for the check."""
    route = policy.routes.get(decision.plan.route or "")
    spec = route.shadow if route is not None else None
    if spec is None:
        return None
    prerouter = decision.prerouter
    if prerouter is not None and prerouter.skip:
        return (spec, "skipped") if runner.sampled(spec.prerouter_rate) else None
    return (spec, "ran") if runner.sampled(spec.rate) else None


@dataclass(frozen=True, slots=True)
class Served:
    """A settled request that was answered (not from the cache), as its check needs it."""

    decision: Decision
    outcome: Outcome
    record: DecisionRecord
    client: ClientRequest
    text: str | None  # the answer served (a live stream's, as gathered)
    prompt_bound: int  # an upper bound of its prompt tokens


@dataclass(frozen=True, slots=True)
class Tiers:
    """What the runtime serving the request offers a check: its policy and backends."""

    policy: Policy
    backends: Mapping[str, Backend | None]
    local: frozenset[str]


def job_for(sample: Sample, served: Served, tiers: Tiers) -> ShadowJob | None:
    """The check a sampled request gets, or None when it cannot be checked (an error, a
    tier not configured, nothing to compare)."""
    decision, outcome, record, client = (
        served.decision,
        served.outcome,
        served.record,
        served.client,
    )
    answered = record.attempts[-1] if record.attempts else None
    if answered is None or record.status != "ok":
        return None
    spec, drawn = sample
    policy = tiers.policy
    check = functools.partial(
        ShadowRecord,
        request_id=new_shadow_id(),
        shadow_of=record.request_id,
        team=record.team,
        route=decision.route,
        policy_version=record.policy_version,
        judge=spec.judge,
        target_quality=spec.target_quality,
        prerouter_score=decision.prerouter.score if decision.prerouter else None,
        prompt=record.prompt,
    )
    case = _Case(served, tiers, check, spec)
    job: ShadowJob | None = None
    if drawn == "skipped":  # the pre-router's labels: the local tier answers in the background
        job = case.skipped(answered)
    elif answered.local and answered.outcome == "accepted" and outcome.completion is not None:
        job = case.accepted(answered)
    elif not answered.local:  # escalated: the rejected local answer against the one served
        job = case.escalated()
    if job is not None and spec.autotune is not None:
        job.step = _tuned_step(policy, decision, job.record.local_tier)
    if job is not None and spec.judge_tier is not None:  # an LLM judge: its tier and cost
        job.judge = tiers.backends.get(spec.judge_tier)
        job.judge_price = policy.tiers[spec.judge_tier].price
        shown = served.prompt_bound + 2 * client.params.max_tokens + _JUDGE_TEMPLATE_TOKENS
        job.max_cost_usd += job.judge_price.cost(shown, _JUDGE_REPLY_TOKENS)
        if job.judge is None:
            return None
    return job


@dataclass(frozen=True, slots=True)
class _Case:
    """One sampled request, and the three checks it may get."""

    served: Served
    tiers: Tiers
    check: Callable[..., ShadowRecord]  # a ShadowRecord with the request's fields filled in
    spec: ShadowSpec

    def skipped(self, answered: Attempt) -> ShadowJob | None:
        """A request the pre-router sent past the local tier: that tier answers it later."""
        client = self.served.client
        local_step = self.served.decision.plan.steps[0].tier
        backend = self.tiers.backends.get(local_step)
        if backend is None or self.served.text is None or local_step not in self.tiers.local:
            return None
        shadow = self.check(
            local_tier=local_step,
            local_model=backend.model,
            reference_tier=answered.tier,
            local_outcome="skipped",
        )
        return ShadowJob(
            shadow, self.spec, client.prompt, client.params, None, self.served.text, backend=backend
        )

    def accepted(self, answered: Attempt) -> ShadowJob | None:
        """A local answer that was accepted and served: the reference tier is asked."""
        client, local = self.served.client, self.served.outcome.completion
        assert local is not None  # (job_for checks it)
        reference_tier = self.spec.reference_tier or self.served.decision.plan.reference_tier
        backend = self.tiers.backends.get(reference_tier)
        if backend is None or reference_tier == answered.tier:
            return None
        price = self.tiers.policy.tiers[reference_tier].price
        shadow = self.check(
            local_tier=answered.tier,
            local_model=answered.model,
            reference_tier=reference_tier,
            local_confidence=_confidence(answered),
            features=features_of(client.prompt.question, local),
            local_prompt_tokens=answered.prompt_tokens,
            local_completion_tokens=answered.completion_tokens,
        )
        return ShadowJob(
            shadow,
            self.spec,
            client.prompt,
            client.params,
            local.text,
            backend=backend,
            price=price,
            max_cost_usd=price.cost(self.served.prompt_bound, client.params.max_tokens),
        )

    def escalated(self) -> ShadowJob | None:
        """A local answer the acceptance rejected, against the remote answer served instead:
        nothing to call."""
        outcome, client, record = self.served.outcome, self.served.client, self.served.record
        rejected = [(t, c) for t, c in outcome.rejected if t in self.tiers.local]
        if not rejected or self.served.text is None:
            return None
        tier, local = rejected[0]
        attempt = next(
            (a for a in record.attempts if a.tier == tier and a.outcome == "escalated"), None
        )
        if attempt is None:  # (its attempt is always recorded; never fail a settled request)
            return None
        shadow = self.check(
            local_tier=tier,
            local_model=local.model,
            reference_tier=record.final_tier or "",
            reference_model=record.final_model,
            local_outcome="escalated",
            local_confidence=_confidence(attempt),
            features=features_of(client.prompt.question, local),
        )
        return ShadowJob(
            shadow, self.spec, client.prompt, client.params, local.text, self.served.text
        )


def _confidence(attempt: Attempt) -> float | None:
    value = (attempt.confidence or {}).get("value")
    return float(value) if isinstance(value, int | float) else None


def _tuned_step(policy: Policy, decision: Decision, tier: str) -> AcceptanceSpec | None:
    """The policy's acceptance of the route's step on `tier` when the answer was judged on
    its scale (same method and model: a tuned or overridden threshold is the same scale)."""
    route = policy.routes.get(decision.route)
    ours = next((s.acceptance for s in route.cascade if s.tier == tier), None) if route else None
    used = next((s.acceptance for s in decision.plan.steps if s.tier == tier), None)
    if ours is None or used is None or (ours.method, ours.model) != (used.method, used.model):
        return None
    return ours
