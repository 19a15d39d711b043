"""Which plan serves a request: the requested route, or what the first matching rule says.

`cascade policy explain` and the server both decide here, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from router.cascade import Plan, Step, resolve
from router.policy.model import DEFAULT_TEAM, MatchSpec, Policy, RuleSpec

if TYPE_CHECKING:
    from classifiers import Router


@dataclass(frozen=True, slots=True)
class Facts:
    """What rules can match on, known before any model runs."""

    team: str = DEFAULT_TEAM
    tags: frozenset[str] = frozenset()
    model: str = ""
    prompt_tokens: int | None = None  # None when no rule needs it
    scores: Mapping[str, float] = field(default_factory=dict)  # router artifact -> score


@dataclass(frozen=True, slots=True)
class Decision:
    plan: Plan
    rule: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    team: str
    key_id: str | None
    tags: frozenset[str]


class KeyIndex:
    """API key -> team and key tags, by the keys' SHA-256 listed in the policy."""

    def __init__(self, policy: Policy) -> None:
        self._keys = {
            key.sha256: (team_name, frozenset(key.tags))
            for team_name, team in policy.teams.items()
            for key in team.keys
        }

    def caller(self, key: str | None) -> Caller:
        if not key:
            return Caller(DEFAULT_TEAM, None, frozenset())
        digest = hashlib.sha256(key.encode()).hexdigest()
        team, tags = self._keys.get(digest, (DEFAULT_TEAM, frozenset()))
        return Caller(team, digest[:12], tags)


def needs_prompt_tokens(policy: Policy) -> bool:
    return any(rule.match.prompt_tokens is not None for rule in policy.rules)


def rule_scores(
    models: tuple[str, ...], routers: Mapping[str, Router], question: str
) -> tuple[dict[str, float], dict[str, object] | None]:
    """Each rule classifier's score of the prompt, and the first as a record's `classifier`
    (the route's own pre-router, when it has one, is recorded instead)."""
    scores = {model: routers[model].score(question) for model in models}
    if not models:
        return scores, None
    first = routers[models[0]]
    return scores, {
        "name": first.name,
        "version": first.version,
        "score": round(scores[models[0]], 6),
        "threshold": None,  # scored for rules; no route threshold applied
        "skipped_first_step": False,
    }


def rule_classifiers(policy: Policy) -> tuple[str, ...]:
    """The router artifacts rules match on: each scores every request to a route."""
    models = (rule.match.classifier.model for rule in policy.rules if rule.match.classifier)
    return tuple(dict.fromkeys(models))


def _matches(match: MatchSpec, facts: Facts) -> bool:
    if match.teams is not None and facts.team not in match.teams:
        return False
    if match.tags is not None and not facts.tags.intersection(match.tags):
        return False
    if match.models is not None and facts.model not in match.models:
        return False
    if match.classifier is not None:
        score = facts.scores.get(match.classifier.model)
        if score is None or not match.classifier.contains(score):
            return False
    return match.prompt_tokens is None or (
        facts.prompt_tokens is not None and match.prompt_tokens.contains(facts.prompt_tokens)
    )


def _apply(plan: Plan, rule: RuleSpec) -> Plan:
    overrides = rule.overrides.acceptance
    if not overrides:
        return plan
    steps = tuple(Step(step.tier, overrides.get(step.tier, step.acceptance)) for step in plan.steps)
    return replace(plan, steps=steps)


def decide(policy: Policy, facts: Facts) -> Decision | None:
    """None when the model is neither a route nor a tier. A tier asked for by name is
    passed through: rules apply to routes only."""
    requested = resolve(policy, facts.model)
    if requested is None or requested.route is None:
        return None if requested is None else Decision(requested, None)
    for rule in policy.rules:
        if _matches(rule.match, facts):
            plan = resolve(policy, rule.route) if rule.route else requested
            assert plan is not None  # rule routes are validated to exist
            return Decision(_apply(plan, rule), rule.name)
    return Decision(requested, None)
