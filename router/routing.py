"""Where a request goes, decided in one place.

`decide` turns what is known before any model runs (the caller's team and tags, the
requested model, the prompt's size and text) into one `Decision`: the rule that matched, the
route and its plan of steps, every classifier consulted with its verdict, and which steps the
route's pre-router skips. The server and `cascade policy explain` both call it; the cascade
executor only carries a Decision out.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from router.backends.base import DEFAULT_FALLBACK_ON, FailureClass
from router.policy.model import (
    DEFAULT_TEAM,
    AcceptanceSpec,
    AutotuneSpec,
    MatchSpec,
    Policy,
    RuleSpec,
)


class Scorer(Protocol):
    """A prompt router (classifiers.Router): P(the first step suffices | prompt)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def score(self, prompt: str) -> float: ...


@dataclass(frozen=True, slots=True)
class Step:
    tier: str
    acceptance: AcceptanceSpec | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a requested model resolves to: a route's steps, or one tier passed through."""

    route: str | None
    steps: tuple[Step, ...]
    reference_tier: str
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stream: Literal["verify", "live"] = "verify"
    # the failure classes on which the next candidate or step is tried (route.fallback_on)
    fallback_on: frozenset[FailureClass] = frozenset(DEFAULT_FALLBACK_ON)

    @property
    def label(self) -> str:
        return self.route or self.steps[0].tier

    @property
    def passthrough(self) -> bool:
        """A tier asked for by name: its upstream's answers and errors pass through."""
        return self.route is None

    def candidates(self, tier: str) -> list[str]:
        """`tier`, then its fallbacks depth-first, each tier once (policies have no cycles).

        A loop, not a recursive closure: a nested function that calls itself is a reference
        cycle, which held each request's plan until a garbage collection."""
        order: list[str] = []
        pending = [tier]
        while pending:
            name = pending.pop()
            if name not in order:
                order.append(name)
                pending.extend(reversed(self.fallbacks.get(name, ())))
        return order


@dataclass(frozen=True, slots=True)
class Verdict:
    """One classifier's score of the prompt. A route's pre-router has a threshold (below it
    the route's first step is skipped); a rule's classifier is scored for matching only."""

    model: str  # the artifact reference as the policy writes it
    name: str
    version: str
    score: float
    threshold: float | None = None

    @property
    def skip(self) -> bool:
        return self.threshold is not None and self.score < self.threshold

    def as_record(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "skipped_first_step": self.skip,
        }


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A step in the order it runs. A skipped step is the last resort (`rescue`): it runs
    only when every later step failed outright."""

    index: int  # its position in the plan
    step: Step
    rescue: bool


@dataclass(frozen=True, slots=True)
class Decision:
    requested_model: str
    plan: Plan
    rule: str | None = None
    verdicts: tuple[Verdict, ...] = ()  # every classifier consulted, rules' first

    @property
    def route(self) -> str:
        return self.plan.label

    @property
    def prerouter(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.threshold is not None), None)

    @property
    def skipped(self) -> int:
        """How many leading steps the pre-router skips (0 or 1)."""
        verdict = self.prerouter
        return 1 if verdict is not None and verdict.skip else 0

    def schedule(self) -> tuple[Scheduled, ...]:
        steps = list(enumerate(self.plan.steps))
        skipped = self.skipped
        return tuple(
            Scheduled(index, step, rescue=position >= len(steps) - skipped)
            for position, (index, step) in enumerate(steps[skipped:] + steps[:skipped])
        )

    def classifier_record(self) -> dict[str, object] | None:
        """The record's `classifier`: the route's pre-router, else the first rule classifier."""
        verdict = self.prerouter or (self.verdicts[0] if self.verdicts else None)
        return None if verdict is None else verdict.as_record()

    def scores_record(self) -> dict[str, float] | None:
        """The record's `scores`: each classifier's (name@version) when more than one scored
        the prompt, so that rules on any of them can be replayed."""
        scores = {f"{v.name}@{v.version}": round(v.score, 6) for v in self.verdicts}
        return scores if len(scores) > 1 else None


@dataclass(frozen=True, slots=True)
class Facts:
    """What routing may look at, known before any model runs."""

    model: str
    team: str = DEFAULT_TEAM
    tags: frozenset[str] = frozenset()
    prompt_tokens: int | None = None  # None when no rule needs it
    question: str = ""  # what classifiers score: the last user message
    features: frozenset[str] = frozenset()  # request features used (tools, image, ...)


@dataclass(frozen=True, slots=True)
class Call:
    """One tier's try at a step, as `walk` asks for it."""

    tier: str
    step: Step
    last: bool  # its answer is kept whatever its confidence
    spares: tuple[str, ...]  # what may continue its stream: its fallbacks, then later tiers


Tried = Literal["rejected", "failed"]  # answered but not kept; did not answer


def walk(decision: Decision, *, live_first: bool = False) -> Generator[Call, Tried, None]:
    """The order a decision's tiers are tried in: each step on its tier, then (when that
    fails) on the tier's fallbacks; an answer rejected moves on to the next step. The caller
    sends back how each call went and stops at the first answer kept; the walk ends when no
    call is left. A skipped step is the last resort: tried only when every later step failed
    outright. The cascade executor and `cascade policy simulate` both walk plans with it."""
    plan = decision.plan
    schedule = decision.schedule()
    rejected = failed = False
    for order, item in enumerate(schedule):
        if item.rescue and (rejected or not failed):
            return  # a skipped step runs only when every later step failed outright
        last = not item.rescue and (item.index == len(plan.steps) - 1 or live_first)
        candidates = plan.candidates(item.step.tier)
        later = [
            tier
            for next_item in schedule[order + 1 :]
            if not next_item.rescue
            for tier in plan.candidates(next_item.step.tier)
        ]
        for position, tier in enumerate(candidates):
            spares = tuple(
                dict.fromkeys(t for t in [*candidates[position + 1 :], *later] if t != tier)
            )
            result = yield Call(tier, item.step, last, spares)
            if result == "rejected":
                rejected = True
                break  # answered, but not confidently: the next step
            failed = True


def needs_prompt_tokens(policy: Policy) -> bool:
    return any(rule.match.prompt_tokens is not None for rule in policy.rules)


def rule_classifiers(policy: Policy) -> tuple[str, ...]:
    """The router artifacts rules match on: each scores every request to a route."""
    models = (rule.match.classifier.model for rule in policy.rules if rule.match.classifier)
    return tuple(dict.fromkeys(models))


class Thresholds(Protocol):
    """Thresholds tuned while serving (router/shadow/autotune.py)."""

    def acceptance(
        self, route: str, tier: str, spec: AcceptanceSpec, autotune: AutotuneSpec | None
    ) -> AcceptanceSpec: ...


def resolve(policy: Policy, model: str, tuned: Thresholds | None = None) -> Plan | None:
    """The plan of a route (its thresholds as `tuned` has them), or of a tier asked for by
    name; None for anything else."""
    if (route := policy.routes.get(model)) is not None:
        autotune = route.shadow.autotune if route.shadow is not None else None
        if autotune is not None and tuned is not None:
            steps = tuple(
                Step(
                    s.tier,
                    s.acceptance and tuned.acceptance(model, s.tier, s.acceptance, autotune),
                )
                for s in route.cascade
            )
        else:
            steps = tuple(Step(s.tier, s.acceptance) for s in route.cascade)
        fallbacks = {tier: tuple(targets) for tier, targets in route.fallbacks.items()}
        return Plan(model, steps, route.reference, fallbacks, route.stream, route.falls_over_on)
    if model in policy.tiers:
        return Plan(None, (Step(model, None),), model)
    return None


def _matches(match: MatchSpec, facts: Facts, scores: Mapping[str, float]) -> bool:
    if match.teams is not None and facts.team not in match.teams:
        return False
    if match.tags is not None and not facts.tags.intersection(match.tags):
        return False
    if match.models is not None and facts.model not in match.models:
        return False
    if match.features is not None and not facts.features.intersection(match.features):
        return False
    if match.classifier is not None:
        score = scores.get(match.classifier.model)
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


def _verdict(
    model: str, scorer: Scorer, question: str, threshold: float | None, known: float | None = None
) -> Verdict:
    score = scorer.score(question) if known is None else known
    return Verdict(model, scorer.name, scorer.version, score, threshold)


def decide(
    policy: Policy,
    routers: Mapping[str, Scorer],
    facts: Facts,
    tuned: Thresholds | None = None,
) -> Decision | None:
    """None when the model is neither a route nor a tier. A tier asked for by name is passed
    through: rules and classifiers apply to routes only. For a route, every rule classifier
    scores the prompt (so the ledger sees their scores whichever rule matches), the first
    matching rule picks the route and its overrides, and that route's pre-router decides
    whether its first step is skipped."""
    requested = resolve(policy, facts.model, tuned)
    if requested is None or requested.passthrough:
        return None if requested is None else Decision(facts.model, requested)
    verdicts = [
        _verdict(model, routers[model], facts.question, None) for model in rule_classifiers(policy)
    ]
    scores = {verdict.model: verdict.score for verdict in verdicts}
    plan, rule_name = requested, None
    for rule in policy.rules:
        if _matches(rule.match, facts, scores):
            chosen = resolve(policy, rule.route, tuned) if rule.route else requested
            assert chosen is not None  # rule routes are validated to exist
            plan, rule_name = _apply(chosen, rule), rule.name
            break
    route = policy.routes[plan.label]
    if route.classifier is not None:
        model = route.classifier.model
        threshold = route.classifier.threshold
        verdicts.append(
            _verdict(model, routers[model], facts.question, threshold, scores.get(model))
        )
    return Decision(facts.model, plan, rule_name, tuple(verdicts))


def restrict(decision: Decision, keep: frozenset[str]) -> Decision | None:
    """The decision with only the steps (and fallbacks) whose tier is in `keep`; None when
    no step is left. The pre-router's skip no longer applies to what remains."""
    steps = tuple(step for step in decision.plan.steps if step.tier in keep)
    if not steps:
        return None
    fallbacks = {
        tier: tuple(t for t in targets if t in keep)
        for tier, targets in decision.plan.fallbacks.items()
        if tier in keep
    }
    plan = replace(decision.plan, steps=steps, fallbacks=fallbacks)
    verdicts = tuple(replace(v, threshold=None) for v in decision.verdicts)
    return replace(decision, plan=plan, verdicts=verdicts)
