"""HTTP handlers: the OpenAI endpoints, models, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from router.backends.base import BackendError, Completion, Prompt
from router.backends.prompt_tokens import estimate_tokens
from router.budgets import Admission
from router.budgets.limiter import BudgetDecision
from router.budgets.shaping import apply, shaped
from router.cache import Entry, Fold, Lookup, storable
from router.cascade import Abandoned, CascadeFailure, Crashed, LiveStream, Outcome
from router.errors import APIError, invalid, not_found_model
from router.failures import failure_error, upstream_ours
from router.keys import Caller
from router.openapi import document
from router.policy.model import AcceptanceSpec, Policy, ShadowSpec
from router.records import Attempt, DecisionRecord, iso_time
from router.redact import Redactor
from router.reload import RELOADER
from router.requests import ClientRequest, parse_embeddings, prompt_too_long
from router.responses import StreamWriter
from router.routing import Decision, Facts, Thresholds, decide
from router.shadow.runner import ShadowJob, ShadowRecord, features_of, new_shadow_id
from router.state import (
    CACHE,
    CALLER,
    CLIENT_REQUEST_ID,
    LEDGER,
    LOGGER,
    METRICS,
    REDACTOR,
    REJECTIONS,
    REQUEST_ID,
    RUNTIME,
    SETTINGS,
    SHADOW,
    TRACING,
    Runtime,
)
from router.surfaces import CHAT, COMPLETIONS, RESPONSES, Exchange, Surface
from router.tracing import OUTBOUND, RequestTrace

_TEMPLATE_TOKENS_PER_MESSAGE = 8
_EMBEDDINGS = frozenset({"embeddings"})
# an LLM judge's call at most, beside the question and both answers (router/shadow/judges.py)
_JUDGE_TEMPLATE_TOKENS, _JUDGE_REPLY_TOKENS = 100, 4
_CLIENT_CLOSED = 499  # the record's http_status when the client left first (nginx's code)
_MAX_TAGS = 16
_TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def _runtime(request: web.Request) -> Runtime:
    runtime = request.app[RUNTIME].current
    if runtime is None:
        raise APIError(503, "the server is starting", type_="server_error", code="not_ready")
    return runtime


def _header_tags(request: web.Request) -> frozenset[str]:
    raw = request.headers.get("x-cascade-tags", "")
    tags = [tag.strip() for tag in raw.split(",") if tag.strip()]
    if len(tags) > _MAX_TAGS or not all(_TAG.match(tag) for tag in tags):
        raise invalid(
            f"x-cascade-tags: at most {_MAX_TAGS} comma-separated tags, each 1-64 characters "
            "of A-Z a-z 0-9 _ . : -",
            "x-cascade-tags",
        )
    return frozenset(tags)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


async def _read_json(request: web.Request, limit: int) -> object:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    timeout = request.app[SETTINGS].body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(65_536):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        message = f"the request body did not arrive within {timeout:g} s"
        raise APIError(408, message, code="request_timeout") from None
    except RequestPayloadError:  # e.g. a body that is not the gzip it claims to be
        raise invalid(
            "could not read the request body (its framing or content encoding is broken)"
        ) from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise invalid(f"could not parse the JSON body: {exc}") from None


async def _prompt_tokens(
    runtime: Runtime, prompt: Prompt, *, exact: bool
) -> tuple[int | None, int]:
    """Enforce `limits.max_prompt_tokens`; the count when `exact` (rules match on it), and
    an upper bound of the prompt's tokens (what a budget reserves).

    Tokens <= UTF-8 bytes, so a prompt that cannot be over the limit is not tokenized
    unless a rule needs its size. Counted with the local tier's tokenizer (chat template
    included), else estimated at 4 bytes per token (as `cascade policy explain` does).
    """
    limit = runtime.loaded.policy.limits.max_prompt_tokens
    texts = prompt.texts
    upper = sum(len(t.encode()) for t in texts) + _TEMPLATE_TOKENS_PER_MESSAGE * len(texts) + 4
    if upper <= limit and not exact:
        return None, upper
    counted = await runtime.count_tokens(prompt)
    tokens = counted if counted is not None else estimate_tokens(prompt)
    if tokens > limit:
        raise prompt_too_long(tokens, limit, "messages" if prompt.is_chat else "prompt")
    return tokens, counted if counted is not None else upper


def _prompt_text(prompt: Prompt, max_chars: int, redactor: Redactor) -> tuple[str, bool]:
    """The prompt as a record keeps it (ledger.log_prompts): roles, secrets redacted, capped."""
    if prompt.text is not None:
        text = prompt.text
    else:
        text = "\n".join(f"{m.role}: {m.content}" for m in prompt.messages)
    text = redactor(text)
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


def _answer_headers(
    runtime: Runtime,
    request_id: str,
    route: str,
    answered_by: tuple[str, str],
    *,
    escalations: int,
    degraded: bool,
) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "x-cascade-route": route,
        "x-cascade-tier": answered_by[0],
        "x-cascade-model": answered_by[1],
        "x-cascade-escalations": str(escalations),
        "x-cascade-degraded": "true" if degraded else "false",
        "x-cascade-policy": runtime.loaded.version,
    }


async def _stream(
    request: web.Request,
    record: DecisionRecord,
    outcome: Outcome,
    *,
    exchange: Exchange,
    headers: dict[str, str],
    fold: Fold | None,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    writer = exchange.writer(record.request_id, outcome.model)
    await response.prepare(request)
    await _stream_body(response, writer, record, outcome, redactor=request.app[REDACTOR], fold=fold)
    return response


async def _send(response: web.StreamResponse, frames: bytes) -> None:
    if frames:
        await response.write(frames)


async def _relay(
    response: web.StreamResponse, writer: StreamWriter, live: LiveStream, fold: Fold | None
) -> tuple[str | None, tuple[int, int]]:
    """A live stream to the client: the upstream's own chunks when it sent them (tool-call
    deltas and all), else the text (and gathered into `fold`, for the cache). Returns the
    finish reason and the usage it ended with."""
    finish, usage = None, (0, 0)
    async with contextlib.aclosing(live.events) as events:
        async for event in events:
            if fold is not None:
                fold.add(event)
            if event.raw is not None:
                await _send(response, writer.chunk(event.raw))
            elif event.text:
                await _send(response, writer.piece(event.text, event.logprobs))
            if event.finish_reason:
                finish = event.finish_reason
                usage = (event.prompt_tokens or 0, event.completion_tokens or 0)
    return finish, usage


async def _stream_body(
    response: web.StreamResponse,
    writer: StreamWriter,
    record: DecisionRecord,
    outcome: Outcome,
    *,
    redactor: Redactor,
    fold: Fold | None,
) -> None:
    try:
        if outcome.completion is not None:
            done = outcome.completion
            if done.raw is not None:  # a whole upstream answer: all of it, as events
                await _send(response, writer.whole(done.raw))
            elif done.text:
                await _send(response, writer.piece(done.text, done.logprobs))
            usage = (done.prompt_tokens, done.completion_tokens)
            await _send(response, writer.end(done.finish_reason, usage))
        elif outcome.live is not None:
            finish, usage = await _relay(response, writer, outcome.live, fold)
            await _send(response, writer.end(finish, usage))
    except BackendError as exc:  # after the first byte: the client sees an error event
        record.status = "upstream_truncated" if exc.kind == "truncated" else "error"
        record.error = exc.message
        message = redactor(exc.message)
        error = APIError(502, message, type_="upstream_error", code="upstream_error")
        await response.write(writer.failed(error))
    except ConnectionResetError:
        record.status, record.http_status = "client_gone", _CLIENT_CLOSED


async def _complete(request: web.Request, surface: Surface) -> web.StreamResponse:
    # The whole request runs on the policy it started with, even if a reload lands meanwhile.
    with _runtime(request).in_use() as runtime:
        return await _complete_on(request, runtime, surface)


async def _complete_on(
    request: web.Request, runtime: Runtime, surface: Surface
) -> web.StreamResponse:
    """Read, validate, decide, run, answer; then build the record from the Decision and what
    the cascade reported, whatever happened."""
    policy = runtime.loaded.policy
    caller = request[CALLER]
    async with _handling(request, runtime, surface.endpoint) as handled:
        record = handled.record
        tags = caller.tags | _header_tags(request)
        record.tags = sorted(tags)
        exchange, raw = await _read_client(request, runtime, record, surface)
        client = exchange.client
        caller.allow(client.model)
        handled.client = client
        tokens, bound = await _prompt_tokens(
            runtime, client.prompt, exact=runtime.rules_need_tokens
        )
        handled.bound = bound
        facts = Facts(
            client.model, caller.team, tags, tokens, client.prompt.question, client.features
        )
        tuned = request.app[SHADOW].tuner  # thresholds shadow.autotune moved
        handled.decision = decide(policy, runtime.loaded.routers, facts, tuned)
        if handled.decision is None:
            raise not_found_model(client.model)
        handled.decided_ns = time.time_ns()
        handled.admission, decision = await _admit(
            runtime,
            record,
            handled.decision,
            facts,
            caller=caller,
            client=client,
            bound=bound,
            tuned=tuned,
        )
        handled.decision = decision
        handled.shadow = _shadow_sample(request, runtime, decision)
        outcome = handled.outcome = await _cached(request, runtime, handled, raw, client)
        if outcome is None:
            try:
                outcome = handled.outcome = await runtime.cascade.run(decision, client)
            except CascadeFailure as failure:
                record.attempts = failure.attempts
                handled.refused = "saturated" if failure.reason == "saturated" else None
                raise exchange.failure(failure, decision.route) from None
        admission = handled.admission
        degraded = outcome.degraded or admission.decision in ("degraded", "local_only")
        record.status = "degraded" if degraded else "ok"
        headers = _answer_headers(
            runtime,
            record.request_id,
            decision.route,
            (outcome.tier, outcome.model),
            escalations=outcome.escalations,
            degraded=degraded,
        )
        headers.update(admission.answer_headers())
        if (lookup := handled.lookup) is not None:
            headers["x-cascade-cache"] = lookup.status
        if client.stream:
            cached = lookup is not None and lookup.write
            if (cached or handled.shadow is not None) and outcome.live is not None:
                handled.fold = Fold(outcome.model)
            return await _stream(
                request, record, outcome, exchange=exchange, headers=headers, fold=handled.fold
            )
        assert outcome.completion is not None  # only streams are served live
        body = exchange.body(record.request_id, outcome.completion)
        return web.Response(
            body=orjson.dumps(body), content_type="application/json", headers=headers
        )


@dataclass(slots=True)
class _Handled:
    """One generation request as the handler learns it; `_settle` records it whatever
    happened."""

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
    shadow: tuple[ShadowSpec, str] | None = None  # drawn for a shadow check (_shadow_sample)
    bound: int = 0  # an upper bound of its prompt tokens


@contextlib.asynccontextmanager
async def _handling(
    request: web.Request, runtime: Runtime, endpoint: str
) -> AsyncIterator[_Handled]:
    """A request's record from its start: a failure becomes what the client got (and a
    refusal for load is noted), and the record is settled however the request ends."""
    caller = request[CALLER]
    trace = request.app[TRACING].begin(request.headers, f"{request.method} {endpoint}")
    handled = _Handled(
        _new_record(request, runtime, caller, endpoint), Admission(caller.team), trace
    )
    passed_on = OUTBOUND.set(trace.outbound)  # for the remote tiers it calls
    try:
        yield handled
    except BaseException as exc:
        _record_failure(handled.record, runtime, exc)
        handled.refused = handled.refused or _limited(exc)
        raise
    finally:
        OUTBOUND.reset(passed_on)
        await _settle(request, runtime, handled)


async def _cached(
    request: web.Request,
    runtime: Runtime,
    handled: _Handled,
    body: dict[str, object],
    client: ClientRequest,
) -> Outcome | None:
    """The answer from the response cache, when the request's route caches and the request
    may be served from it. The lookup stays on `handled`, to store the answer after."""
    decision, cache = handled.decision, runtime.cache
    if cache is None or decision is None:
        return None
    lookup = handled.lookup = cache.lookup(
        endpoint=handled.record.endpoint,
        version=runtime.loaded.version,
        decision=decision,
        team=handled.record.team,
        body=body,
        client=client,
        cache_control=request.headers.get("Cache-Control", ""),
    )
    if lookup is None or not lookup.read:
        return None
    entry = handled.hit = await cache.get(lookup)
    if entry is None:
        return None
    completion = entry.completion
    return Outcome([], entry.tier, completion.model, degraded=False, completion=completion)


def _keep(runtime: Runtime, handled: _Handled) -> None:
    """A fresh answer to a request its route caches goes into the cache (a hit's record
    says what the cache saved instead)."""
    record, lookup, outcome = handled.record, handled.lookup, handled.outcome
    if lookup is None or runtime.cache is None:
        return
    record.cache = lookup.status
    if handled.hit is not None:
        record.cache_hit = True
        record.cache_saved_usd = handled.hit.cost_usd
        record.counterfactual_cost_usd = record.saved_usd = handled.hit.counterfactual_usd
        return
    if not lookup.write or record.status != "ok" or outcome is None:
        return
    completion: Completion | None = outcome.completion
    if completion is None and handled.fold is not None:
        completion = handled.fold.completion()
    if completion is not None and storable(completion):
        entry = Entry(completion, outcome.tier, record.cost_usd, record.counterfactual_cost_usd)
        runtime.cache.put(lookup, entry)


def _shadow_sample(
    request: web.Request, runtime: Runtime, decision: Decision
) -> tuple[ShadowSpec, str] | None:
    """Whether this request will be shadow-checked (its route's spec, and which rate drew
    it: `rate`, or `prerouter_rate` for a request the pre-router sent past the local tier).
    Drawn before it runs, so a live stream can be gathered for the check."""
    route = runtime.loaded.policy.routes.get(decision.plan.route or "")
    spec = route.shadow if route is not None else None
    if spec is None:
        return None
    runner = request.app[SHADOW]
    prerouter = decision.prerouter
    if prerouter is not None and prerouter.skip:
        return (spec, "skipped") if runner.sampled(spec.prerouter_rate) else None
    return (spec, "ran") if runner.sampled(spec.rate) else None


def _served_text(handled: _Handled) -> str | None:
    outcome = handled.outcome
    if outcome is None:
        return None
    if outcome.completion is not None:
        return outcome.completion.text
    found = handled.fold.completion() if handled.fold is not None else None
    return found.text if found is not None else None


def _offer_shadow(request: web.Request, runtime: Runtime, handled: _Handled) -> None:
    """Queue the request's shadow check when it was sampled (router/shadow/runner.py has the
    three kinds); the offer itself is a few cheap steps, the check runs later."""
    sample, decision, outcome, record, client = (
        handled.shadow,
        handled.decision,
        handled.outcome,
        handled.record,
        handled.client,
    )
    if sample is None or decision is None or outcome is None or client is None:
        return
    served = record.attempts[-1] if record.attempts else None
    if served is None or record.status != "ok" or handled.hit is not None:
        return
    spec, drawn = sample
    policy = runtime.loaded.policy
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
    job: ShadowJob | None = None
    if drawn == "skipped":  # the pre-router's labels: the local tier answers in the background
        local_step = decision.plan.steps[0].tier
        backend = runtime.backends.get(local_step)
        reference = _served_text(handled)
        if backend is not None and reference is not None and local_step in runtime.local_tiers:
            shadow = check(
                local_tier=local_step,
                local_model=backend.model,
                reference_tier=served.tier,
                local_outcome="skipped",
            )
            job = ShadowJob(
                shadow, spec, client.prompt, client.params, None, reference, backend=backend
            )
    elif served.local and served.outcome == "accepted" and outcome.completion is not None:
        local = outcome.completion  # accepted locally: ask the reference tier
        reference_tier = spec.reference_tier or decision.plan.reference_tier
        backend = runtime.backends.get(reference_tier)
        if backend is not None and reference_tier != served.tier:
            price = policy.tiers[reference_tier].price
            shadow = check(
                local_tier=served.tier,
                local_model=served.model,
                reference_tier=reference_tier,
                local_confidence=_confidence(served),
                features=features_of(client.prompt.question, local),
            )
            job = ShadowJob(
                shadow,
                spec,
                client.prompt,
                client.params,
                local.text,
                backend=backend,
                price=price,
                max_cost_usd=price.cost(handled.bound, client.params.max_tokens),
            )
    elif not served.local:  # escalated: the rejected local answer against the one served
        job = _escalated_check(runtime, handled, check, spec)
    if job is not None and spec.autotune is not None:
        job.step = _tuned_step(policy, decision, job.record.local_tier)
    if job is not None and spec.judge_tier is not None:  # an LLM judge: its tier and cost
        job.judge = runtime.backends.get(spec.judge_tier)
        job.judge_price = policy.tiers[spec.judge_tier].price
        shown = handled.bound + 2 * client.params.max_tokens + _JUDGE_TEMPLATE_TOKENS
        job.max_cost_usd += job.judge_price.cost(shown, _JUDGE_REPLY_TOKENS)
        if job.judge is None:
            job = None
    if job is not None:
        request.app[SHADOW].offer(job)


def _tuned_step(policy: Policy, decision: Decision, tier: str) -> AcceptanceSpec | None:
    """The policy's acceptance of the route's step on `tier` when the answer was judged on
    its scale (same method and model: a tuned or overridden threshold is the same scale)."""
    route = policy.routes.get(decision.route)
    ours = next((s.acceptance for s in route.cascade if s.tier == tier), None) if route else None
    used = next((s.acceptance for s in decision.plan.steps if s.tier == tier), None)
    if ours is None or used is None or (ours.method, ours.model) != (used.method, used.model):
        return None
    return ours


def _escalated_check(
    runtime: Runtime,
    handled: _Handled,
    check: Callable[..., ShadowRecord],
    spec: ShadowSpec,
) -> ShadowJob | None:
    """A local answer the acceptance rejected, against the remote answer served instead:
    nothing to call."""
    outcome, client, record = handled.outcome, handled.client, handled.record
    assert outcome is not None
    assert client is not None
    rejected = [(t, c) for t, c in outcome.rejected if t in runtime.local_tiers]
    served = _served_text(handled)
    if not rejected or served is None:
        return None
    tier, local = rejected[0]
    attempt = next(
        (a for a in record.attempts if a.tier == tier and a.outcome == "escalated"), None
    )
    if attempt is None:  # (its attempt is always recorded; never fail a settled request)
        return None
    shadow = check(
        local_tier=tier,
        local_model=local.model,
        reference_tier=record.final_tier or "",
        reference_model=record.final_model,
        local_outcome="escalated",
        local_confidence=_confidence(attempt),
        features=features_of(client.prompt.question, local),
    )
    return ShadowJob(shadow, spec, client.prompt, client.params, local.text, served)


def _confidence(attempt: Attempt) -> float | None:
    value = (attempt.confidence or {}).get("value")
    return float(value) if isinstance(value, int | float) else None


def _limited(exc: BaseException) -> str | None:
    """A refusal by rate or budget (counted like overload, not recorded one by one)."""
    if isinstance(exc, APIError) and exc.code in ("rate_limit_exceeded", "budget_exceeded"):
        return exc.code
    return None


async def _admit(
    runtime: Runtime,
    record: DecisionRecord,
    planned: Decision,
    facts: Facts,
    *,
    caller: Caller,
    client: ClientRequest,
    bound: int,
    tuned: Thresholds,
) -> tuple[Admission, Decision]:
    """The team's budget and rates admit the request (or 429), and shape its plan (a
    cheaper route's thresholds as autotune has them, too)."""
    max_tokens = client.params.max_tokens

    def shaped_as(kind: BudgetDecision) -> Decision | None:
        return shaped(
            planned,
            kind,
            facts,
            policy=runtime.loaded.policy,
            routers=runtime.loaded.routers,
            local_tiers=runtime.local_tiers,
            tuned=tuned,
        )

    def cost_of(kind: BudgetDecision) -> int:
        found = shaped_as(kind)
        return runtime.max_cost_nano(found.plan, bound, max_tokens) if found else 0

    admission = await runtime.limiter.admit(
        facts.team,
        record.request_id,
        cost_of=cost_of,
        tokens=bound + max_tokens,
        key=(caller.key_id or "", caller.limits),
    )
    decision = apply(planned, admission, shaped_as(admission.decision))
    record.budget = admission.as_record()
    return admission, decision


def _tokens_used(record: DecisionRecord) -> int:
    return sum(a.prompt_tokens + a.completion_tokens for a in record.attempts)


def _new_record(
    request: web.Request, runtime: Runtime, caller: Caller, endpoint: str
) -> DecisionRecord:
    return DecisionRecord(
        request_id=request[REQUEST_ID],
        endpoint=endpoint,
        policy_version=runtime.loaded.version,
        client_request_id=request.get(CLIENT_REQUEST_ID),
        team=caller.team,
        key_id=caller.key_id,
    )


def _record_failure(record: DecisionRecord, runtime: Runtime, exc: BaseException) -> None:
    """What the client got when a request did not end in an answer: an OpenAI error (4xx:
    `invalid`, unless it is the gateway's own key or quota upstream), nothing because it
    left (`client_gone`), or an internal error (500). Attempts the cascade made go along."""
    if isinstance(exc, APIError):
        record.status = "invalid" if exc.status < 500 and not upstream_ours(exc) else "error"
        record.http_status, record.error = exc.status, exc.message
        exc.headers.setdefault("x-cascade-policy", runtime.loaded.version)
    elif isinstance(exc, asyncio.CancelledError):  # aiohttp cancels a handler on disconnect
        record.status, record.http_status = "client_gone", _CLIENT_CLOSED
        if isinstance(exc, Abandoned):
            record.attempts = exc.attempts
    elif isinstance(exc, Exception):
        record.status, record.http_status = "error", 500
        cause = exc.__cause__ if isinstance(exc, Crashed) and exc.__cause__ else exc
        record.error = f"internal error ({type(cause).__name__})"
        if isinstance(exc, Crashed):
            record.attempts = exc.attempts


async def _read_client(
    request: web.Request, runtime: Runtime, record: DecisionRecord, surface: Surface
) -> tuple[Exchange, dict[str, object]]:
    """The validated body (and the JSON it came as); what the record keeps of it is written
    as soon as it is known."""
    policy = runtime.loaded.policy
    raw = await _read_json(request, policy.limits.max_body_bytes)
    exchange = surface.read(raw, policy.limits)
    client = exchange.client
    record.requested_model, record.stream = client.model, client.stream
    record.user = client.params.user
    if policy.ledger.log_prompts:
        record.prompt, record.prompt_truncated = _prompt_text(
            client.prompt, policy.ledger.max_prompt_chars, request.app[REDACTOR]
        )
    return exchange, raw if isinstance(raw, dict) else {}


def _scrub(record: DecisionRecord, redactor: Redactor) -> None:
    """The last net before the ledger: no configured secret in the record's free text."""
    if record.error:
        record.error = redactor(record.error)
    for attempt in record.attempts:
        if attempt.error:
            attempt.error = redactor(attempt.error)


async def _settle(request: web.Request, runtime: Runtime, handled: _Handled) -> None:
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
    if outcome is not None:
        if outcome.live is not None:
            await outcome.live.aclose()  # its attempt is known even if it never started
        record.attempts = outcome.all_attempts()
        record.final_tier, record.final_model = outcome.tier, outcome.model
    reference = decision.plan.reference_tier if decision is not None else None
    record.finish(runtime.loaded.policy, reference)
    _keep(runtime, handled)
    _scrub(record, request.app[REDACTOR])
    if handled.refused is not None and runtime.loaded.policy.ledger.rejections == "aggregate":
        request.app[REJECTIONS].add(record.team, record.route or "-", handled.refused)
    else:
        with handled.trace.ledger():
            request.app[LEDGER].submit(record)
    try:
        request.app[METRICS].observe(record, seconds)
    except Exception:  # noqa: BLE001 - metrics must not turn a served answer into a 500
        request.app[LOGGER].exception("metrics_observe_failed", request_id=record.request_id)
    _offer_shadow(request, runtime, handled)
    handled.trace.end(record, handled.decided_ns)
    await runtime.limiter.settle(handled.admission, record.cost_usd, _tokens_used(record))


async def embeddings(request: web.Request) -> web.StreamResponse:
    with _runtime(request).in_use() as runtime:
        return await _embed_on(request, runtime)


async def _embed_on(request: web.Request, runtime: Runtime) -> web.StreamResponse:
    """Embeddings from the first tier of the route that serves them; recorded like a
    completion (tokens, cost, every tier skipped or tried)."""
    policy = runtime.loaded.policy
    caller = request[CALLER]
    async with _handling(request, runtime, "/v1/embeddings") as handled:
        record = handled.record
        tags = caller.tags | _header_tags(request)
        record.tags = sorted(tags)
        parsed, body = parse_embeddings(await _read_json(request, policy.limits.max_body_bytes))
        record.requested_model, record.user = parsed.model, parsed.user
        caller.allow(parsed.model)
        facts = Facts(parsed.model, caller.team, tags, None, parsed.first_text, _EMBEDDINGS)
        decision = handled.decision = decide(
            policy, runtime.loaded.routers, facts, request.app[SHADOW].tuner
        )
        if decision is None:
            raise not_found_model(parsed.model)
        handled.decided_ns = time.time_ns()
        bound = parsed.token_bound  # tokens <= UTF-8 bytes
        admission = handled.admission = await runtime.limiter.admit(
            caller.team,
            record.request_id,
            cost_of=lambda _: runtime.max_cost_nano(decision.plan, bound, 0),
            tokens=bound,
            key=(caller.key_id or "", caller.limits),
        )
        record.budget = admission.as_record()
        try:
            attempts, tier, answer = await runtime.cascade.embed(decision, body)
        except CascadeFailure as failure:
            record.attempts = failure.attempts
            raise failure_error(failure, prompt_param="input", route=decision.route) from None
        record.attempts, record.final_tier = attempts, tier
        record.final_model = attempts[-1].model
        headers = _answer_headers(
            runtime,
            record.request_id,
            decision.route,
            (tier, attempts[-1].model),
            escalations=len(attempts) - 1,
            degraded=False,
        )
        headers.update(admission.answer_headers())
        return web.Response(
            body=orjson.dumps(answer), content_type="application/json", headers=headers
        )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, COMPLETIONS)


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses, translated to and from chat completions (router/surfaces.py)."""
    return await _complete(request, RESPONSES)


async def models(request: web.Request) -> web.Response:
    """Routes and tiers (those the caller's key may use)."""
    policy = _runtime(request).loaded.policy
    allowed = request[CALLER].models
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "cascade:route",
            "description": route.description,
        }
        for name, route in policy.routes.items()
    ]
    data += [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "cascade:tier",
            "description": tier.description,
        }
        for name, tier in policy.tiers.items()
    ]
    if allowed is not None:
        data = [entry for entry in data if entry["id"] in allowed]
    return web.json_response(
        {"object": "list", "data": data}, dumps=lambda o: orjson.dumps(o).decode()
    )


async def spend(request: web.Request) -> web.Response:
    """GET /v1/spend: the caller's team's spend, limits and what is left (`?team=` another
    team's, for an admin key)."""
    runtime = _runtime(request)
    caller = request[CALLER]
    team = request.query.get("team", caller.team)
    if team != caller.team and runtime.keys.enforced:
        caller.require_admin()  # a team's key sees its own team only
    found = await runtime.limiter.standing(team)
    body = found or {"team": team, "limits": None}
    return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())


async def admin_spend(request: web.Request) -> web.Response:
    """GET /admin/spend: every team with limits (an admin key, by the middleware)."""
    runtime = _runtime(request)
    teams = [
        found
        for name in runtime.loaded.policy.teams
        if (found := await runtime.limiter.standing(name)) is not None
    ]
    return web.json_response({"teams": teams}, dumps=lambda o: orjson.dumps(o).decode())


async def admin_policy(request: web.Request) -> web.Response:
    """The active policy version, when it was loaded, the thresholds autotune set in it,
    and the last rejected change."""
    reloader = request.app[RELOADER]
    runtime = _runtime(request)
    rejected = reloader.last_rejected
    body = {
        "source": runtime.loaded.source,
        "version": runtime.loaded.version,
        "loaded_at": iso_time(runtime.loaded.loaded_at),
        "tuned": request.app[SHADOW].tuner.in_force(runtime.loaded.policy),
        "last_rejected": None
        if rejected is None
        else {"at": iso_time(rejected.at), "errors": rejected.errors},
    }
    return web.json_response(body)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document, `model` narrowed to the active policy's routes and tiers."""
    policy = _runtime(request).loaded.policy
    names = [*policy.routes, *policy.tiers]
    return web.json_response(document(names), dumps=lambda o: orjson.dumps(o).decode())


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME].current
    if runtime is None:
        return web.json_response({"status": "starting"}, status=503)
    body = {
        "status": "ready",
        "policy": runtime.loaded.version,
        "tiers": runtime.tier_states(),
        "pid": os.getpid(),  # which worker answered (with --workers)
        "workers_replaced": request.app[SETTINGS].workers_replaced,
    }
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME].current
    depths = runtime.queue_depths() if runtime is not None else {}
    states = runtime.breaker_states() if runtime is not None else {}
    return web.Response(
        body=request.app[METRICS].render(
            depths,
            request.app[LEDGER].stats(),
            states,
            cache_memory=request.app[CACHE].memory_size(),
            policy_version=runtime.loaded.version if runtime is not None else None,
            in_flight=runtime.in_flight if runtime is not None else None,
            thresholds=request.app[SHADOW].tuner.thresholds(runtime.loaded.policy)
            if runtime is not None
            else None,
        ),
        content_type="text/plain",
        charset="utf-8",
    )
