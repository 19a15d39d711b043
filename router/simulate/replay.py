"""One recorded request replayed under a candidate policy: where it would have gone, what
each tier would have done, what it would have cost.

Routing is the serving code itself: `decide` (rules, routes, pre-routers), the budget
`Limiter` on an in-memory store clocked by the records' own times, `shaped`/`apply` (budget
routing), and `walk` (the order the cascade executor tries tiers in). What a tier would
have done is what the record says it did:

- an answer it gave: its tokens and latency as recorded, kept or rejected by the candidate's
  acceptance on the recorded confidence (same method), or because its structured output was
  invalid;
- a failure it had (error, timeout, shed): the same failure, and the walk goes on;
- a tier the request never reached: when the candidate keeps its answer whatever it says
  (the last step, or no acceptance), its tokens are estimated from the recorded ones
  (tokens.py) and its latency is unknown; when the candidate would judge that answer, the
  request cannot be replayed (no record knows what it would have said).

Classifier scores are the recorded ones where the candidate uses the same artifact
(name@version); a different artifact is scored on the prompt's feature vector where a
shadow check recorded it, or on the prompt where the ledger logged it; else the request
cannot be replayed. A request that cannot be replayed is counted with its reason, never
guessed.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from router.audit.aggregate import ANSWERED, is_local
from router.backends.registry import backend_type, local_tiers
from router.budgets.limiter import Admission, BudgetDecision, Limiter, max_cost_nano
from router.budgets.shaping import apply, shaped
from router.budgets.store import MemoryStore
from router.errors import APIError
from router.policy import LoadedPolicy
from router.policy.model import DEFAULT_TEAM
from router.records import Attempt, AttemptOutcome, price, served_of
from router.routing import (
    Call,
    Decision,
    Facts,
    Scorer,
    Tried,
    decide,
    needs_prompt_tokens,
    walk,
)
from router.simulate.evidence import Evidence
from router.simulate.tokens import TokenModel

Record = dict[str, Any]
_FAILED = ("error", "timeout", "shed")
_EMBEDDINGS = "/v1/embeddings"
_DECISIONS_KEPT = 65_536  # decisions remembered by their facts (no classifiers)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class NotReplayable(Exception):
    """Why a record cannot be replayed under the candidate (its message, as the report
    counts it)."""


@dataclass(slots=True)
class Served:
    """What one request did (as recorded) or would do (as replayed)."""

    team: str
    route: str
    status: str
    final_tier: str | None
    local: bool  # an in-process tier's answer was served
    escalated: bool  # an answer was rejected on the way
    cost_usd: float
    latency_ms: float | None  # None: a tier it would call never ran for it
    estimated_usd: float = 0.0  # of cost_usd, priced from estimated tokens
    # the calls estimated: (recorded tier, tier never called, its prompt and completion
    # tokens as recorded), whence the interval of a sum of them (tokens.py)
    estimates: tuple[tuple[str, str, int, int], ...] = ()
    budget: str | None = None  # what the team's budget did: degraded, rerouted, ...
    carried: bool = False  # not routed again: carried over as recorded (cache hit, ...)


def as_recorded(record: Record, *, carried: bool = False) -> Served:
    """The request as it happened."""
    attempts = record.get("attempts") or ()
    served = served_of(record)
    budget = record.get("budget") or {}
    return Served(
        team=str(record.get("team") or DEFAULT_TEAM),
        route=str(record.get("route") or record.get("requested_model") or "-"),
        status=str(record["status"]),
        final_tier=record.get("final_tier"),
        local=served is not None and is_local(served),
        escalated=any(a.get("outcome") == "escalated" for a in attempts),
        cost_usd=float(record.get("cost_usd") or 0.0),
        latency_ms=record.get("latency_ms"),
        budget=budget.get("decision") if budget.get("decision") != "ok" else None,
        carried=carried,
    )


class _Known:
    """What the request being replayed says about its prompt, for the scorers."""

    __slots__ = ("question", "scores", "vector")

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.vector: tuple[float, ...] | None = None
        self.question: str | None = None


class _Recorded:
    """A candidate's router, answering with what the record knows (a Scorer)."""

    def __init__(self, router: Scorer, known: _Known) -> None:
        self._router = router
        self._known = known
        self.name, self.version = router.name, router.version
        self._key = f"{router.name}@{router.version}"

    def score(self, prompt: str) -> float:
        known = self._known
        found = known.scores.get(self._key)
        if found is not None:
            return found
        by_features = getattr(self._router, "score_features", None)
        if known.vector is not None and by_features is not None:
            return float(by_features(known.vector))
        if known.question is not None:
            return self._router.score(known.question)
        raise NotReplayable(
            f"classifier {self._key}: no recorded score, features or prompt to score"
        )


def question(prompt: str | None, truncated: bool) -> str | None:
    """The last user message of a logged prompt (`role: content` lines); None when the
    prompt was not logged or was cut short."""
    if not prompt or truncated:
        return None
    found: list[str] | None = None
    current: list[str] | None = None
    for line in prompt.split("\n"):
        role, sep, rest = line.partition(": ")
        if sep and role in _ROLES:
            current = [rest]
            if role == "user":
                found = current
        elif current is not None:
            current.append(line)
    return None if found is None else "\n".join(found)


@dataclass(slots=True)
class _Walked:
    attempts: list[Attempt]
    served: int | None  # index in attempts
    degraded: bool
    escalated: bool
    latency_known: bool
    estimated: list[tuple[int, tuple[str, str, int, int]]]  # attempt index, what it scaled


class Replayer:
    """Replays records, in ledger order, under one candidate policy."""

    def __init__(self, loaded: LoadedPolicy, evidence: Evidence) -> None:
        policy = loaded.policy
        self._policy = policy
        self.evidence = evidence
        self._tokens: TokenModel = evidence.tokens
        self._known = _Known()
        self._routers: Mapping[str, Scorer] = {
            ref: _Recorded(router, self._known) for ref, router in loaded.routers.items()
        }
        self._local = local_tiers(policy)
        self._serves = {
            name: spec.serves(backend_type(spec).features) for name, spec in policy.tiers.items()
        }
        self._needs_tokens = needs_prompt_tokens(policy)
        self._decided: dict[Facts, Decision | None] = {}
        # the calls `walk` makes for each remembered decision, by what the calls before said
        self._walks: dict[tuple[int, bool, tuple[Tried, ...]], Call | None] = {}
        self._now = 0.0
        # teams whose limits the candidate sets: only their requests are admitted by it
        self._limited = frozenset(n for n, t in policy.teams.items() if t.limits.limited)
        self._limiter = (
            Limiter(
                policy,
                MemoryStore(clock=lambda: self._now),
                clock=lambda: self._now,
                on_error=lambda _: None,
            )
            if self._limited
            else None
        )

    async def replay(self, record: Record) -> Served:
        """The request under the candidate; raises NotReplayable."""
        attempts: list[Record] = list(record.get("attempts") or ())
        if record.get("cache_hit"):
            return as_recorded(record, carried=True)
        if not attempts:
            if record["status"] in ("invalid", "error", "client_gone"):
                return as_recorded(record, carried=True)
            raise NotReplayable(f"{record['status']} by the recorded policy: nothing ran")
        if record["status"] == "client_gone":
            raise NotReplayable("its client left before the answer")
        if record["status"] == "upstream_truncated":
            raise NotReplayable("its answer's stream was cut off mid-way")
        team = str(record.get("team") or DEFAULT_TEAM)
        facts = self._facts(record, team, attempts)
        planned = self._decide(facts)
        if planned is None:
            return Served(team, facts.model, "invalid", None, False, False, 0.0, None)
        self._now = _epoch(record["ts"])
        prompt, output = _bound(record, attempts)
        try:
            decision, admission = await self._admit(record, planned, facts, prompt, output)
        except APIError:
            return Served(team, planned.route, "refused", None, False, False, 0.0, None)
        walked = self._walk(decision, record, attempts, facts.features)
        return await self._priced(record, team, decision, admission, walked)

    def _decide(self, facts: Facts) -> Decision | None:
        """`decide`; without classifiers the decision depends on the facts alone, and the
        decisions of the facts seen last are reused (most traffic repeats them)."""
        if self._routers:
            return decide(self._policy, self._routers, facts)
        found = self._decided.get(facts, self)
        if found is self:
            if len(self._decided) >= _DECISIONS_KEPT:
                self._decided.clear()
                self._walks.clear()  # keyed by the ids of the decisions forgotten
            found = self._decided[facts] = decide(self._policy, self._routers, facts)
        return found  # type: ignore[return-value]

    def _facts(self, record: Record, team: str, attempts: list[Record]) -> Facts:
        model = record.get("requested_model")
        if not isinstance(model, str):
            raise NotReplayable("no requested model recorded")
        if self._routers:
            self._know(record)
        counted = next((a for a in attempts if is_local(a)), attempts[0])
        return Facts(
            model=model,
            team=team,
            tags=frozenset(record.get("tags") or ()),
            prompt_tokens=int(counted["prompt_tokens"]) if self._needs_tokens else None,
            question="",
            features=frozenset(record.get("features") or ()),
        )

    def _know(self, record: Record) -> None:
        """What the record says of its prompt, for the candidate's classifiers."""
        known = self._known
        known.scores = {}
        if (classifier := record.get("classifier")) and classifier.get("score") is not None:
            known.scores[f"{classifier['name']}@{classifier['version']}"] = classifier["score"]
        known.scores.update(record.get("scores") or {})
        check = self.evidence.checks.get(record["request_id"])
        known.vector = check.vector if check is not None else None
        known.question = question(record.get("prompt"), bool(record.get("prompt_truncated")))

    async def _admit(
        self, record: Record, planned: Decision, facts: Facts, prompt: int, output: int
    ) -> tuple[Decision, Admission | None]:
        """The team's budget and rates under the candidate, as serving admits (429: raises
        APIError). Its requests' own spend, replayed, is what fills its budget."""
        if self._limiter is None or facts.team not in self._limited:
            return planned, None
        policy = self._policy

        def shaped_as(kind: BudgetDecision) -> Decision | None:
            return shaped(
                planned, kind, facts, policy=policy, routers=self._routers, local_tiers=self._local
            )

        def cost_of(kind: BudgetDecision) -> int:
            found = shaped_as(kind)
            return max_cost_nano(policy, found.plan, prompt, output) if found else 0

        admission = await self._limiter.admit(
            facts.team, record["request_id"], cost_of=cost_of, tokens=prompt + output
        )
        try:
            return apply(planned, admission, shaped_as(admission.decision)), admission
        except APIError:
            await self._limiter.settle(admission, 0.0, 0)
            raise

    def _walk(
        self,
        decision: Decision,
        record: Record,
        recorded: list[Record],
        features: frozenset[str],
    ) -> _Walked:
        left = list(recorded)  # each recorded attempt stands for one call
        walked = _Walked([], None, False, False, True, [])
        best: tuple[float, int] | None = None
        live_first = bool(record.get("stream")) and decision.plan.stream == "live"
        calls = _Calls(decision, live_first, self._walks if not self._routers else None)
        call = calls.first()
        while call is not None:
            result = self._try(call, left, features, record, walked)
            if isinstance(result, float):  # rejected: its confidence (-1: invalid output)
                walked.escalated = True
                if best is None or result > best[0]:
                    best = (result, len(walked.attempts) - 1)
                tried: Tried = "rejected"
            elif result == "served":
                walked.served = len(walked.attempts) - 1
                return walked
            else:
                tried = "failed"
            call = calls.next(tried)
        if best is not None:
            walked.served, walked.degraded = best[1], True
            walked.attempts[best[1]].outcome = "degraded"
        return walked

    def _try(
        self,
        call: Call,
        left: list[Record],
        features: frozenset[str],
        record: Record,
        walked: _Walked,
    ) -> float | str:
        """One call: "served", "failed", or the confidence of an answer rejected."""
        tier = call.tier
        if features - self._serves[tier]:
            return "failed"  # skipped: the tier does not serve what the request uses
        found = next((a for a in left if a["tier"] == tier and a.get("outcome") != "skipped"), None)
        if found is None:
            return self._unrecorded(call, record, walked)
        if found.get("outcome") == "client_gone":
            raise NotReplayable(f"tier {tier}'s answer was cut off by its client leaving")
        left.remove(found)
        failed = found.get("outcome") in _FAILED
        walked.attempts.append(self._attempt(found, found["outcome"] if failed else "accepted"))
        if failed:
            return "failed"
        if call.last or call.step.acceptance is None or record.get("endpoint") == _EMBEDDINGS:
            return "served"  # (embeddings are never judged: the first tier that answers)
        value = _judged(call, found)
        if value is None:
            return "served"
        walked.attempts[-1].outcome = "escalated"
        return value

    def _unrecorded(self, call: Call, record: Record, walked: _Walked) -> str:
        """A tier the request never reached: kept whatever it says, or not replayable."""
        tier = call.tier
        if not (call.last or call.step.acceptance is None):
            raise NotReplayable(
                f"tier {tier} never answered it, and the candidate would judge its answer"
            )
        source = next(
            (a for a in reversed(record["attempts"]) if a.get("outcome") in ANSWERED), None
        )
        if source is None:
            raise NotReplayable(f"tier {tier} never answered it, and no tier's tokens to scale")
        source_tier = str(source["tier"])
        counts = int(source["prompt_tokens"]), int(source["completion_tokens"])
        prompt, completion = self._tokens.estimate(source_tier, tier, *counts)
        spec = self._policy.tiers[tier]
        walked.attempts.append(
            Attempt(
                tier=tier,
                backend=spec.type,
                model=spec.served_model,
                started_at=record["ts"],
                latency_ms=0.0,
                prompt_tokens=prompt,
                completion_tokens=completion,
                local=tier in self._local,
                usage_source="estimated",
            )
        )
        walked.latency_known = False
        walked.estimated.append((len(walked.attempts) - 1, (source_tier, tier, *counts)))
        return "served"

    def _attempt(self, found: Record, outcome: AttemptOutcome) -> Attempt:
        tier = str(found["tier"])
        return Attempt(
            tier=tier,
            backend=str(found.get("backend") or ""),
            model=str(found.get("model") or ""),
            started_at=str(found.get("started_at") or ""),
            latency_ms=float(found.get("latency_ms") or 0.0),
            prompt_tokens=int(found.get("prompt_tokens") or 0),
            completion_tokens=int(found.get("completion_tokens") or 0),
            cached_tokens=int(found.get("cached_tokens") or 0),
            reasoning_tokens=int(found.get("reasoning_tokens") or 0),
            outcome=outcome,
            local=tier in self._local,
        )

    async def _priced(
        self,
        record: Record,
        team: str,
        decision: Decision,
        admission: Admission | None,
        walked: _Walked,
    ) -> Served:
        """Prices the attempts as serving does (records.price) and settles the budget with
        what they cost."""
        cost = price(self._policy, walked.attempts)
        if admission is not None and self._limiter is not None:
            tokens = sum(a.prompt_tokens + a.completion_tokens for a in walked.attempts)
            await self._limiter.settle(admission, cost, tokens)
        budget = admission.decision if admission is not None else "ok"
        served = walked.attempts[walked.served] if walked.served is not None else None
        status = "error" if served is None else "ok"
        if served is not None and (walked.degraded or budget in ("degraded", "local_only")):
            status = "degraded"
        estimated = sum(walked.attempts[index].cost_usd for index, _ in walked.estimated)
        latency = None
        if walked.latency_known:
            recorded = sum(float(a.get("latency_ms") or 0.0) for a in record["attempts"])
            overhead = max(0.0, float(record.get("latency_ms") or 0.0) - recorded)
            latency = overhead + sum(a.latency_ms for a in walked.attempts)
        return Served(
            team=team,
            route=decision.route,
            status=status,
            final_tier=None if served is None else served.tier,
            local=served is not None and served.local,
            escalated=walked.escalated,
            cost_usd=cost,
            latency_ms=latency,
            estimated_usd=estimated,
            estimates=tuple(scaled for _, scaled in walked.estimated),
            budget=None if budget == "ok" else budget,
        )


class _Calls:
    """`walk` over a decision, remembered where the decision is (the same object serves
    every request with the same facts): the call after each sequence of results is worked
    out once."""

    def __init__(
        self,
        decision: Decision,
        live_first: bool,
        memo: dict[tuple[int, bool, tuple[Tried, ...]], Call | None] | None,
    ) -> None:
        self._decision, self._live_first, self._memo = decision, live_first, memo
        self._said: tuple[Tried, ...] = ()
        self._walk: Generator[Call, Tried, None] | None = None
        self._fed = 0  # of `_said`, how much the walk has been sent

    def first(self) -> Call | None:
        return self._call()

    def next(self, tried: Tried) -> Call | None:
        self._said += (tried,)
        return self._call()

    def _call(self) -> Call | None:
        key = (id(self._decision), self._live_first, self._said)
        if self._memo is not None and key in self._memo:
            return self._memo[key]
        found = self._walked()
        if self._memo is not None:
            self._memo[key] = found
        return found

    def _walked(self) -> Call | None:
        """The next call of a live walk, brought up to what has been said (a remembered
        call may have answered some of it without the walk)."""
        call: Call | None = None
        try:
            if self._walk is None:
                self._walk, self._fed = walk(self._decision, live_first=self._live_first), 0
                call = next(self._walk)
            for tried in self._said[self._fed :]:
                call = self._walk.send(tried)
                self._fed += 1
        except StopIteration:
            return None
        return call


def _bound(record: Record, attempts: list[Record]) -> tuple[int, int]:
    """What serving reserved the request's cost at: its recorded bound, else (records from
    before it was recorded) the most tokens any attempt used."""
    bound = record.get("bound_tokens")
    if isinstance(bound, list) and len(bound) == 2:
        return int(bound[0]), int(bound[1])
    prompt = max(int(a["prompt_tokens"]) for a in attempts)
    return prompt, max(int(a["completion_tokens"]) for a in attempts)


def _judged(call: Call, found: Record) -> float | None:
    """None when the step's acceptance keeps the recorded answer; else its confidence (-1:
    its structured output was invalid, never kept)."""
    check = found.get("output_check")
    if isinstance(check, str) and check.startswith("invalid"):
        return -1.0
    spec = call.step.acceptance
    assert spec is not None
    confidence = found.get("confidence") or {}
    if confidence.get("method") != spec.method or confidence.get("value") is None:
        raise NotReplayable(
            f"tier {call.tier}: no recorded {spec.method} confidence for its acceptance"
        )
    value = float(confidence["value"])
    return None if value >= spec.threshold else value


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
