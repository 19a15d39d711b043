"""A request's life after intake, shared by every endpoint that routes: its route decided,
its budget and rates admitting it, and its record settled however it ends (an answer, an
error, the client gone), priced, scrubbed and handed to the ledger, the metrics, the trace,
the shadow checks and the budget."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from router.api.reasons import reason
from router.budgets import Admission
from router.budgets.limiter import BudgetDecision
from router.budgets.shaping import apply, shaped
from router.cache import Entry, Fold, Lookup
from router.errors import ERROR_TEXT, APIError, clip, not_found_model
from router.failures import upstream_ours
from router.observe.tracing import OUTBOUND, RequestTrace
from router.outcomes import Abandoned, CascadeFailure, Crashed, Outcome
from router.records import DecisionRecord
from router.redact import Redactor
from router.request import ClientRequest
from router.routing import Decision, Facts, Thresholds, decide
from router.server import caching
from router.server.intake import new_record
from router.server.state import (
    CALLER,
    FEEDBACK,
    KEY_GATES,
    LEDGER,
    LOGGER,
    METRICS,
    REDACTOR,
    REJECTIONS,
    SHADOW,
    TRACING,
    Runtime,
)
from router.server.streaming import CLIENT_CLOSED
from router.shadow import offer


@dataclass(slots=True)
class Handled:
    """One routed request as the handler learns it; `settle` records it whatever happened."""

    record: DecisionRecord
    admission: Admission
    trace: RequestTrace
    started: float = field(default_factory=time.perf_counter)
    decided_ns: int | None = None  # when its route was known (wall clock, for its trace)
    decision: Decision | None = None
    outcome: Outcome | None = None
    refused: str | None = None  # why it was refused for load: saturated, rate or budget
    lookup: Lookup | None = None  # its use of the response cache (None: route not cached)
    hit: Entry | None = None  # the cached answer it was served
    fold: Fold | None = None  # a live stream's answer, gathered for the cache
    client: ClientRequest | None = None  # the request as the cascade ran it
    shadow: offer.Sample | None = None  # drawn for a shadow check (offer.draw)
    bound: int = 0  # an upper bound of its prompt tokens


@contextlib.asynccontextmanager
async def handling(request: web.Request, runtime: Runtime, endpoint: str) -> AsyncIterator[Handled]:
    """A request's record from its start: a failure becomes what the client got (and a
    refusal for load is noted), and the record is settled however the request ends."""
    caller = request[CALLER]
    trace = request.app[TRACING].begin(request.headers, f"{request.method} {endpoint}")
    handled = Handled(new_record(request, runtime, caller, endpoint), Admission(caller.team), trace)
    passed_on = OUTBOUND.set(trace.outbound)  # for the remote tiers it calls
    cap = caller.limits.max_in_flight if caller.limits is not None else None
    try:
        async with request.app[KEY_GATES].held(caller.key_id, cap):  # the key's own cap
            yield handled
    except BaseException as exc:
        _record_failure(handled.record, runtime, exc)
        handled.refused = handled.refused or _limited(exc)
        raise
    finally:
        OUTBOUND.reset(passed_on)
        await settle(request.app, runtime, handled)


def route(request: web.Request, runtime: Runtime, handled: Handled, facts: Facts) -> Decision:
    """The request's route, by the one `decide` (404 for a model that is neither a route
    nor a tier), with the thresholds shadow.autotune has moved; 403 when a rule sends it to
    a route the caller's key may not use."""
    tuned = request.app[SHADOW].tuner
    decision = handled.decision = decide(
        runtime.loaded.policy, runtime.loaded.routers, facts, tuned
    )
    if decision is None:
        raise not_found_model(facts.model)
    handled.decided_ns = time.time_ns()
    if decision.route != facts.model:  # a rule moved it: the key must cover where it goes
        request[CALLER].allow_route(decision.route, decision.rule)
    return decision


async def admit(
    request: web.Request,
    runtime: Runtime,
    handled: Handled,
    facts: Facts,
    *,
    output_bound: int,
    shape: bool,
) -> Decision:
    """The team's budget and rates admit the request (or 429), reserving its maximum cost:
    `handled.bound` input tokens and `output_bound` output tokens (every choice) on every
    tier the plan may call; with `shape`, its budget
    standing shapes the plan (a cheaper route, judged at that route's thresholds as
    autotune has them). Returns the decision to run."""
    planned, record, caller = handled.decision, handled.record, request[CALLER]
    assert planned is not None  # (route() came first)
    bound = handled.bound
    record.bound_tokens = [bound, output_bound]
    tuned: Thresholds = request.app[SHADOW].tuner

    def shaped_as(kind: BudgetDecision) -> Decision | None:
        if not shape:
            return planned
        found = shaped(
            planned,
            kind,
            facts,
            policy=runtime.loaded.policy,
            routers=runtime.loaded.routers,
            local_tiers=runtime.local_tiers,
            tuned=tuned,
        )
        if found is not None and not caller.may_use(found.route):
            return planned  # a cheaper route the key may not use: budget routing does not apply
        return found

    def cost_of(kind: BudgetDecision) -> int:
        found = shaped_as(kind)
        return runtime.max_cost_nano(found.plan, bound, output_bound) if found else 0

    admission = handled.admission = await runtime.limiter.admit(
        facts.team,
        record.request_id,
        cost_of=cost_of,
        tokens=bound + output_bound,
        key=(caller.key_id or "", caller.limits),
    )
    try:
        decision = apply(planned, admission, shaped_as(admission.decision)) if shape else planned
    finally:  # what the budget did, as applied: a plan with nothing cheaper ran as it was
        record.budget = admission.as_record()
    handled.decision = decision
    return decision


def answer_headers(
    runtime: Runtime,
    request_id: str,
    route: str,
    answered_by: tuple[str, str],
    *,
    escalations: int,
    fallbacks: int,
    degraded: bool,
) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "x-cascade-route": route,
        "x-cascade-tier": answered_by[0],
        "x-cascade-model": answered_by[1],
        "x-cascade-escalations": str(escalations),
        "x-cascade-fallbacks": str(fallbacks),
        "x-cascade-degraded": "true" if degraded else "false",
        "x-cascade-policy": runtime.loaded.version,
    }


def _limited(exc: BaseException) -> str | None:
    """A refusal by rate or budget (counted like overload, not recorded one by one)."""
    if isinstance(exc, APIError) and exc.code in ("rate_limit_exceeded", "budget_exceeded"):
        return exc.code
    return None


def _record_failure(record: DecisionRecord, runtime: Runtime, exc: BaseException) -> None:
    """What the client got when a request did not end in an answer: an OpenAI error (4xx:
    `invalid`, unless it is the gateway's own key or quota upstream), nothing because it
    left (`client_gone`), or an internal error (500). Attempts the cascade made go along."""
    if isinstance(exc, APIError):
        record.status = "invalid" if exc.status < 500 and not upstream_ours(exc) else "error"
        if _limited(exc):
            record.status = "refused"  # its team's or key's rate or budget
        record.http_status, record.error = exc.status, clip(exc.message, ERROR_TEXT)
        exc.headers.setdefault("x-cascade-policy", runtime.loaded.version)
    elif isinstance(exc, asyncio.CancelledError):  # aiohttp cancels a handler on disconnect
        record.status, record.http_status = "client_gone", CLIENT_CLOSED
        if isinstance(exc, Abandoned):
            record.attempts = exc.attempts
    elif isinstance(exc, Exception):
        record.status, record.http_status = "error", 500
        cause = exc.__cause__ if isinstance(exc, Crashed) and exc.__cause__ else exc
        record.error = f"internal error ({type(cause).__name__})"
        if isinstance(exc, Crashed):
            record.attempts = exc.attempts


def _scrub(record: DecisionRecord, redactor: Redactor) -> None:
    """The last net before the ledger: no configured secret in the record's free text."""
    if record.error:
        record.error = clip(redactor(record.error), ERROR_TEXT)
    for attempt in record.attempts:
        if attempt.error:
            attempt.error = clip(redactor(attempt.error), ERROR_TEXT)


def _tokens_used(record: DecisionRecord) -> int:
    return sum(a.prompt_tokens + a.completion_tokens for a in record.attempts)


async def settle(app: web.Application, runtime: Runtime, handled: Handled) -> None:
    """Complete the record from the Decision and the Outcome, price it, hand it to the
    ledger and the metrics. Runs for every request, answered or not; a request refused for
    overload is only counted, unless the policy wants its full record. What the request
    cost replaces what its team's budget held for it."""
    record, decision, outcome = handled.record, handled.decision, handled.outcome
    seconds = time.perf_counter() - handled.started
    record.latency_ms = round(seconds * 1000, 3)
    if decision is not None:
        record.route, record.rule = decision.route, decision.rule
        record.classifier = decision.classifier_record()
        record.scores = decision.scores_record()
    if outcome is not None:
        if outcome.live is not None:
            await outcome.live.aclose()  # its attempt is known even if it never started
        record.attempts = outcome.all_attempts()
        record.final_tier, record.final_model = outcome.served_by
    reference = decision.plan.reference_tier if decision is not None else None
    record.finish(runtime.loaded.policy, reference)
    if decision is not None:  # as the header said it, now with every attempt known
        record.reason = reason(
            decision,
            record.attempts,
            budget=handled.admission.decision,
            budget_share=handled.admission.share,
            cache_hit=handled.hit is not None,
        )
    caching.keep(
        runtime,
        record,
        lookup=handled.lookup,
        hit=handled.hit,
        outcome=outcome,
        fold=handled.fold,
    )
    _scrub(record, app[REDACTOR])
    if handled.refused is not None and runtime.loaded.policy.ledger.rejections == "aggregate":
        app[REJECTIONS].add(record.team, record.route or "-", handled.refused)
    else:
        with handled.trace.ledger():
            app[LEDGER].submit(record)
        app[FEEDBACK].note(record.request_id, record.owner())
    try:
        app[METRICS].observe(record, seconds)
    except Exception:  # noqa: BLE001 - metrics must not turn a served answer into a 500
        app[LOGGER].exception("metrics_observe_failed", request_id=record.request_id)
    _offer_shadow(app, runtime, handled)
    handled.trace.end(record, handled.decided_ns)
    await runtime.limiter.settle(handled.admission, record.cost_usd, _tokens_used(record))


def _offer_shadow(app: web.Application, runtime: Runtime, handled: Handled) -> None:
    """Queue the request's shadow check when it was sampled and answered by a tier."""
    sample, decision, outcome, client = (
        handled.shadow,
        handled.decision,
        handled.outcome,
        handled.client,
    )
    if sample is None or decision is None or outcome is None or client is None:
        return
    if handled.hit is not None:  # a cached answer: no tier answered it
        return
    text = caching.served_text(outcome, handled.fold)
    served = offer.Served(decision, outcome, handled.record, client, text, handled.bound)
    tiers = offer.Tiers(runtime.loaded.policy, runtime.backends, runtime.local_tiers)
    job = offer.job_for(sample, served, tiers)
    if job is not None:
        app[SHADOW].offer(job)


def failed(error: APIError, decision: Decision, failure: CascadeFailure) -> APIError:
    """`error`, what the client is told when no tier answered, with why the request went
    where it did. Raised as returned: an exception raised from a local variable is a
    reference cycle with its traceback's frame, which held each failed request's objects
    until a garbage collection (~10 ms of the event loop for a few hundred)."""
    error.headers["x-cascade-reason"] = reason(decision, failure.attempts)
    return error
