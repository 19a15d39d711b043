"""`cascade policy explain`: what a policy would do with a prompt, without calling a model.

It decides with the server's own code (router.routing.decide) and counts tokens with the
first tier that can count them offline (a local model's vocabulary), so what it prints is
what serving records.
"""

from __future__ import annotations

from typing import Any

from router.backends.base import Message, Prompt
from router.backends.prompt_tokens import estimate_tokens
from router.backends.registry import backend_type
from router.budgets.shaping import shaped
from router.policy import LoadedPolicy
from router.policy.model import DEFAULT_TEAM
from router.routing import Facts, decide, needs_prompt_tokens


def _count(loaded: LoadedPolicy, prompt: Prompt) -> tuple[int, str]:
    for name, spec in loaded.policy.tiers.items():
        counter = backend_type(spec).offline_counter
        if counter is not None:
            return counter(spec)(prompt), f"tokenizer of tier '{name}'"
    return estimate_tokens(prompt), "estimate (4 bytes per token)"


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
) -> dict[str, Any]:
    """The decision for one single-message chat request, as a JSON-ready dict."""
    policy = loaded.policy
    requested = model or policy.default_route or next(iter(policy.routes))
    prompt = Prompt(messages=(Message("user", text),))
    tokens, method = _count(loaded, prompt)
    counted = tokens if needs_prompt_tokens(policy) else None
    facts = Facts(requested, team, tags, counted, prompt.question, features)
    decision = decide(policy, loaded.routers, facts)
    if decision is None:
        raise ValueError(f"model '{requested}' is neither a route nor a tier of this policy")
    budget = _budget(loaded, team, budget_share)
    if budget is not None and budget["decision"] not in ("ok", "refused"):
        local = frozenset(n for n, t in policy.tiers.items() if backend_type(t).local)
        found = shaped(
            decision,
            budget["decision"],
            facts,
            policy=policy,
            routers=loaded.routers,
            local_tiers=local,
        )
        decision = found or decision
    output = max_tokens or policy.limits.default_max_tokens
    skipped = decision.skipped
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
                "skipped": index < skipped,
                "unsupported": lacking,  # request features it lacks: skipped when served
            }
        )
        costs.append((spec.price.cost(tokens, 1), spec.price.cost(tokens, output)))
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
        "reference_tier": decision.plan.reference_tier,
        "stream": decision.plan.stream,
        "max_tokens": output,
        "budget": budget,
        # cheapest: the first step run answers with one token; dearest: every step runs and
        # writes max_tokens.
        "cost_usd": {
            "min": round(costs[skipped][0], 10),
            "max": round(sum(c[1] for c in costs), 10),
        },
    }


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
