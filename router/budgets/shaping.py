"""How a team's budget standing changes where its request goes (its `budget_routing`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from router.budgets.limiter import Admission, BudgetDecision
from router.errors import APIError
from router.policy.model import Policy
from router.routing import Decision, Facts, Scorer, Thresholds, decide, restrict


def shaped(
    decision: Decision,
    kind: BudgetDecision,
    facts: Facts,
    *,
    policy: Policy,
    routers: Mapping[str, Scorer],
    local_tiers: frozenset[str],
    tuned: Thresholds | None = None,
) -> Decision | None:
    """The decision as a budget standing `kind` shapes it: `degraded` and `local_only` keep
    the plan's local steps only (None when it has none), `rerouted` is the team's cheaper
    route."""
    if kind == "ok":
        return decision
    if kind == "rerouted":
        team = policy.teams.get(facts.team)
        route = team.budget_routing.route if team is not None else None
        found = decide(policy, routers, replace(facts, model=route), tuned) if route else None
        return found or decision
    return restrict(decision, local_tiers)


def apply(decision: Decision, admission: Admission, found: Decision | None) -> Decision:
    """The shaped decision to run; at the budget with no local step, 429. A plan with no
    local step to degrade to stays as it was (and the admission says `ok`)."""
    if found is not None:
        return found
    if admission.decision == "local_only":
        raise APIError(
            429,
            f"team '{admission.team}' has spent its budget, and route '{decision.route}' "
            "has no local tier to answer within it",
            type_="insufficient_quota",
            code="budget_exceeded",
        )
    admission.decision = "ok"  # nothing cheaper to fall back to
    return decision
