"""How a team's budget standing changes where its request goes (its `budget_routing`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from router.budgets.limiter import Admission
from router.errors import APIError
from router.policy.model import Policy
from router.routing import Decision, Facts, Scorer, decide, restrict


def shape(
    decision: Decision,
    admission: Admission,
    facts: Facts,
    *,
    policy: Policy,
    routers: Mapping[str, Scorer],
    local_tiers: frozenset[str],
) -> Decision:
    """`degraded` and `local_only`: the plan's local steps only; `rerouted`: the team's
    cheaper route. A plan with no local step stays as it was when degraded (and the
    admission says so), and is a 429 at the budget."""
    if admission.decision == "ok":
        return decision
    if admission.decision == "rerouted":
        route = policy.teams[admission.team].budget_routing.route
        assert route is not None  # only set when the policy names one
        return decide(policy, routers, replace(facts, model=route)) or decision
    local = restrict(decision, local_tiers)
    if local is not None:
        return local
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
