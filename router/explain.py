"""`cascade policy explain`: what a policy would do with a prompt, without calling a model.

It decides with the server's own code (router.routing.decide) and counts tokens with the
first tier that can count them offline (a local model's vocabulary). The acceptance
thresholds are the policy file's; a server whose shadow checks re-tune them (`autotune`)
may serve others, and `ServedThresholds` (from `GET /admin/policy`, `--server`) puts those
in, so the plan printed is the one that server runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.backends.base import Message, Prompt
from router.backends.prompt_tokens import estimate_tokens
from router.backends.registry import backend_type, local_tiers
from router.budgets.shaping import shaped
from router.policy import LoadedPolicy
from router.policy.model import DEFAULT_TEAM, AcceptanceSpec, AutotuneSpec, Policy
from router.routing import Decision, Facts, decide, needs_prompt_tokens


def _count(loaded: LoadedPolicy, prompt: Prompt) -> tuple[int, str]:
    for name, spec in loaded.policy.tiers.items():
        counter = backend_type(spec).offline_counter
        if counter is not None:
            return counter(spec)(prompt), f"tokenizer of tier '{name}'"
    return estimate_tokens(prompt), "estimate (4 bytes per token)"


@dataclass(frozen=True, slots=True)
class ServedThresholds:
    """The thresholds a server serves with where autotune moved them: `GET /admin/policy`'s
    `tuned` list, for the policy version it names."""

    server: str
    version: str
    tuned: dict[tuple[str, str], float]

    @classmethod
    def of(cls, server: str, body: dict[str, Any]) -> ServedThresholds:
        tuned = {(str(t["route"]), str(t["tier"])): float(t["threshold"]) for t in body["tuned"]}
        return cls(server, str(body["version"]), tuned)

    def acceptance(
        self, route: str, tier: str, spec: AcceptanceSpec, autotune: AutotuneSpec | None
    ) -> AcceptanceSpec:
        threshold = self.tuned.get((route, tier))
        if threshold is None:
            return spec
        return spec.model_copy(update={"threshold": threshold})


def explain(
    loaded: LoadedPolicy,
    text: str,
    *,
    model: str | None = None,
    team: str = DEFAULT_TEAM,
    tags: frozenset[str] = frozenset(),
    max_tokens: int | None = None,
    features: frozenset[str] = frozenset(),
    budget_share: float | None = None,
    served: ServedThresholds | None = None,
) -> dict[str, Any]:
    """The decision for one single-message chat request, as a JSON-ready dict. Thresholds
    are the file's, or those `served` reports where it serves this very policy version."""
    policy = loaded.policy
    requested = model or policy.default_route or next(iter(policy.routes))
    prompt = Prompt(messages=(Message("user", text),))
    tokens, method = _count(loaded, prompt)
    counted = tokens if needs_prompt_tokens(policy) else None
    facts = Facts(requested, team, tags, counted, prompt.question, features)
    tuned = served if served is not None and served.version == loaded.version else None
    decision = decide(policy, loaded.routers, facts, tuned)
    if decision is None:
        raise ValueError(f"model '{requested}' is neither a route nor a tier of this policy")
    budget = _budget(loaded, team, budget_share)
    if budget is not None and budget["decision"] not in ("ok", "refused"):
        found = shaped(
            decision,
            budget["decision"],
            facts,
            policy=policy,
            routers=loaded.routers,
            local_tiers=local_tiers(policy),
            tuned=tuned,
        )
        decision = found or decision
    output = max_tokens or policy.limits.default_max_tokens
    steps, costs = _steps(policy, decision, features, tokens, output)
    return {
        "policy": loaded.version,
        "model": requested,
        "team": team,
        "tags": sorted(tags),
        "features": sorted(features),
        "prompt_tokens": tokens,
        "prompt_tokens_counted_by": method,
        "rule": decision.rule,
        "route": decision.plan.label,
        "classifier": decision.classifier_record(),
        "plan": steps,
        "thresholds": _thresholds_source(loaded, served),
        "reference_tier": decision.plan.reference_tier,
        "stream": decision.plan.stream,
        "max_tokens": output,
        "budget": budget,
        # cheapest: the first step run answers with one token; dearest: every step runs and
        # writes max_tokens.
        "cost_usd": {
            "min": round(costs[decision.skipped][0], 10),
            "max": round(sum(c[1] for c in costs), 10),
        },
    }


def _steps(
    policy: Policy, decision: Decision, features: frozenset[str], tokens: int, output: int
) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """Each step of the plan as printed, and its cheapest and dearest cost."""
    steps, costs = [], []
    for index, step in enumerate(decision.plan.steps):
        spec = policy.tiers[step.tier]
        served = spec.serves(backend_type(spec).features)
        lacking = sorted(features - served)
        acceptance = None
        if step.acceptance is not None:
            acceptance = step.acceptance.model_dump(exclude_none=True)
        steps.append(
            {
                "tier": step.tier,
                "type": spec.type,
                "model": spec.served_model,
                "acceptance": acceptance,
                "fallbacks": decision.plan.candidates(step.tier)[1:],
                "skipped": index < decision.skipped,
                "unsupported": lacking,  # request features it lacks: skipped when served
            }
        )
        costs.append((spec.price.cost(tokens, 1), spec.price.cost(tokens, output)))
    return steps, costs


def _thresholds_source(loaded: LoadedPolicy, served: ServedThresholds | None) -> str:
    if served is None:
        return (
            "the policy file's (a server's autotune may serve others: --server URL "
            "with an admin key shows those)"
        )
    if served.version != loaded.version:
        return (
            f"the policy file's: {served.server} serves policy {served.version}, "
            f"not this file ({loaded.version}), so its tuned thresholds do not apply"
        )
    moved = ", ".join(f"{r}/{t} {v}" for (r, t), v in sorted(served.tuned.items()))
    return f"in force on {served.server} (autotuned: {moved or 'none'})"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"policy      {result['policy']}",
        f"request     model={result['model']} team={result['team']} "
        f"tags={','.join(result['tags']) or '-'} features={','.join(result['features']) or '-'}",
        f"prompt      {result['prompt_tokens']} tokens ({result['prompt_tokens_counted_by']})",
        f"rule        {result['rule'] or '(none matched)'}",
        f"route       {result['route']}",
        f"classifier  {_classifier_line(result['classifier'])}",
        "plan",
    ]
    for index, step in enumerate(result["plan"]):
        acceptance = step["acceptance"]
        keep = "always kept"
        if acceptance:
            method = acceptance["method"]
            if "model" in acceptance:
                method += f" ({acceptance['model']})"
            keep = f"keep if {method} >= {acceptance['threshold']}, else escalate"
        if step["skipped"]:
            keep = "skipped by the classifier (runs only if every later step fails)"
        if step["unsupported"]:
            keep = f"skipped: {', '.join(step['unsupported'])} (not served by this tier)"
        fallbacks = f"; on error: {', '.join(step['fallbacks'])}" if step["fallbacks"] else ""
        lines.append(
            f"  {index}. {step['tier']} ({step['type']}: {step['model']}) — {keep}{fallbacks}"
        )
    lines.append(f"thresholds  {result['thresholds']}")
    lines.append(f"streaming   {result['stream']}")
    if result["budget"] is not None:
        lines.append(f"budget      {_budget_line(result['budget'])}")
    cost = result["cost_usd"]
    lines.append(
        f"cost        ${cost['min']:.8f} .. ${cost['max']:.8f} (max_tokens {result['max_tokens']})"
    )
    return "\n".join(lines)


def _budget(loaded: LoadedPolicy, team: str, share: float | None) -> dict[str, Any] | None:
    """The team's limits and budget routing, and what they do at a `share` spent."""
    spec = loaded.policy.teams.get(team)
    if spec is None or not spec.limits.limited:
        return None
    routing = spec.budget_routing
    decision = "ok"
    if share is not None and share >= 1:
        decision = "local_only" if routing.at_limit == "local" else "refused"
    elif share is not None and routing.degrade_at is not None and share >= routing.degrade_at:
        decision = "rerouted" if routing.route else "degraded"
    return {
        "limits": spec.limits.model_dump(exclude_none=True),
        "budget_routing": routing.model_dump(exclude_none=True),
        "share": share,
        "decision": decision,
    }


def _budget_line(budget: dict[str, Any]) -> str:
    limits = ", ".join(f"{k} {v}" for k, v in budget["limits"].items())
    if budget["share"] is None:
        return f"{limits} (pass --budget-share to see the route at a share spent)"
    return f"{limits}; at {budget['share']:.0%} spent: {budget['decision']}"


def _classifier_line(verdict: dict[str, Any] | None) -> str:
    if verdict is None:
        return "(none on this route)"
    if verdict["threshold"] is None:  # scored for the rules only
        return f"{verdict['name']}@{verdict['version']}: score {verdict['score']:.4f} (for rules)"
    compare = "<" if verdict["skipped_first_step"] else ">="
    outcome = "skip the first step" if verdict["skipped_first_step"] else "start at the first step"
    return (
        f"{verdict['name']}@{verdict['version']}: score {verdict['score']:.4f} {compare} "
        f"threshold {verdict['threshold']} -> {outcome}"
    )
