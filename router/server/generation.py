"""The generation endpoints (chat completions, completions, responses): read, validate,
decide, admit, run (or serve from the cache), answer; the record is settled whatever
happened (router/server/lifecycle.py)."""

from __future__ import annotations

from dataclasses import replace

import orjson
from aiohttp import web

from router.api.bodies import prepare_output
from router.api.reasons import reason
from router.api.surfaces import CHAT, COMPLETIONS, RESPONSES, Exchange, Surface
from router.cache import Fold
from router.keys.index import Caller
from router.outcomes import CascadeFailure, Outcome
from router.request import ClientRequest
from router.routing import Facts
from router.server import caching, intake, lifecycle
from router.server.state import CALLER, INTAKE, REDACTOR, SHADOW, Runtime
from router.server.streaming import stream
from router.shadow import offer


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, COMPLETIONS)


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses, translated to and from chat completions (router/api/surfaces.py)."""
    return await _complete(request, RESPONSES)


async def _complete(request: web.Request, surface: Surface) -> web.StreamResponse:
    # The whole request runs on the policy it started with, even if a reload lands meanwhile.
    with intake.runtime_of(request).in_use() as runtime:
        return await _complete_on(request, runtime, surface)


async def _complete_on(
    request: web.Request, runtime: Runtime, surface: Surface
) -> web.StreamResponse:
    """Read, validate, decide, run, answer; then build the record from the Decision and what
    the cascade reported, whatever happened."""
    caller = request[CALLER]
    async with lifecycle.handling(request, runtime, surface.endpoint) as handled:
        record = handled.record
        tags = intake.tags(request, record)
        async with request.app[INTAKE].turn(caller.team) as turn:  # a team's heavy steps
            exchange, raw = await intake.read_client(request, runtime, record, surface, turn)
            caller.allow(exchange.client.model)
            with turn.charged():
                tokens, handled.bound = await intake.prompt_tokens(runtime, exchange.client)
            client = handled.client = _as_run(exchange.client, caller, runtime, tokens)
        facts = Facts(
            client.model, caller.team, tags, tokens, client.prompt.question, client.features
        )
        record.features = sorted(client.features)
        lifecycle.route(request, runtime, handled, facts)
        decision = await lifecycle.admit(
            request, runtime, handled, facts, output_bound=client.output_bound, shape=True
        )
        prepare_output(client)  # the client's schema compiled once it is admitted
        handled.shadow = offer.draw(request.app[SHADOW], runtime.loaded.policy, decision)
        handled.lookup, handled.hit = await caching.cached(
            runtime,
            record,
            decision=decision,
            body=raw,
            client=client,
            cache_control=request.headers.get("Cache-Control", ""),
        )
        if handled.hit is not None:
            outcome = handled.outcome = caching.served(handled.hit)
        else:
            try:
                outcome = handled.outcome = await runtime.cascade.run(decision, client)
            except CascadeFailure as failure:
                record.attempts = failure.attempts
                handled.refused = "saturated" if failure.reason == "saturated" else None
                raise lifecycle.failed(
                    exchange.failure(failure, decision.route), decision, failure
                ) from None
        return await _answer(request, runtime, handled, exchange, outcome)


def _as_run(
    client: ClientRequest, caller: Caller, runtime: Runtime, tokens: int | None
) -> ClientRequest:
    """The request as the cascade runs it: its team's (the tiers' fair slots and its
    `limits.max_in_flight`) and its prompt tokens when they were counted."""
    team = runtime.loaded.policy.teams.get(caller.team)
    cap = team.limits.max_in_flight if team is not None else None
    params = replace(client.params, tenant=caller.team, tenant_cap=cap)
    return replace(client, params=params, prompt_tokens=tokens)


async def _answer(
    request: web.Request,
    runtime: Runtime,
    handled: lifecycle.Handled,
    exchange: Exchange,
    outcome: Outcome,
) -> web.StreamResponse:
    """The answer in the client's API, whole or streamed, with the headers that say how it
    was served."""
    record, decision, client = handled.record, handled.decision, exchange.client
    assert decision is not None
    admission = handled.admission
    degraded = outcome.degraded or admission.decision in ("degraded", "local_only")
    record.status = "degraded" if degraded else "ok"
    headers = lifecycle.answer_headers(
        runtime,
        record.request_id,
        decision.route,
        (outcome.tier, outcome.model),
        escalations=outcome.escalations,
        fallbacks=outcome.fallbacks,
        degraded=degraded,
    )
    headers.update(admission.answer_headers())
    headers["x-cascade-reason"] = reason(
        decision,
        outcome.attempts,
        live_tier=outcome.tier if outcome.live is not None else None,
        budget=admission.decision,
        budget_share=admission.share,
        cache_hit=handled.hit is not None,
    )
    if (lookup := handled.lookup) is not None:
        headers["x-cascade-cache"] = lookup.status
    if client.stream:
        cached = lookup is not None and lookup.write
        if (cached or handled.shadow is not None) and outcome.live is not None:
            handled.fold = Fold(outcome.model)
        return await stream(
            request,
            record,
            outcome,
            exchange=exchange,
            headers=headers,
            fold=handled.fold,
            redactor=request.app[REDACTOR],
        )
    assert outcome.completion is not None  # only streams are served live
    body = exchange.body(record.request_id, outcome.completion)
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)
