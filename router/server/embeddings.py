"""POST /v1/embeddings: from the first tier of the route that serves them; opened, routed,
admitted and recorded like a completion (tokens, cost, every tier skipped or tried)."""

from __future__ import annotations

import orjson
from aiohttp import web

from router.api.bodies import parse_embeddings
from router.api.reasons import reason
from router.backends.base import EMBEDDINGS_REQUEST
from router.errors import clip
from router.failures import failure_error
from router.outcomes import CascadeFailure
from router.routing import Facts
from router.server import intake, lifecycle
from router.server.state import CALLER, INTAKE, Runtime


async def embeddings(request: web.Request) -> web.StreamResponse:
    with intake.runtime_of(request).in_use() as runtime:
        return await _embed_on(request, runtime)


async def _embed_on(request: web.Request, runtime: Runtime) -> web.StreamResponse:
    policy = runtime.loaded.policy
    caller = request[CALLER]
    async with lifecycle.handling(request, runtime, "/v1/embeddings") as handled:
        record = handled.record
        tags = intake.tags(request, record)
        async with request.app[INTAKE].turn(caller.team) as turn:  # a team's heavy steps
            raw = await intake.read_json(
                request, policy.limits.max_body_bytes, policy.limits.max_json_depth, turn
            )
            with turn.charged():
                parsed, body = parse_embeddings(raw)
        record.requested_model = clip(parsed.model)
        record.user = clip(parsed.user) if parsed.user is not None else None
        caller.allow(parsed.model)
        facts = Facts(parsed.model, caller.team, tags, None, parsed.first_text, EMBEDDINGS_REQUEST)
        lifecycle.route(request, runtime, handled, facts)
        handled.bound = parsed.token_bound  # tokens <= UTF-8 bytes
        decision = await lifecycle.admit(
            request, runtime, handled, facts, output_bound=0, shape=False
        )
        try:
            attempts, tier, answer = await runtime.cascade.embed(decision, body)
        except CascadeFailure as failure:
            record.attempts = failure.attempts
            raise lifecycle.failed(
                failure_error(failure, prompt_param="input", route=decision.route),
                decision,
                failure,
            ) from None
        record.attempts, record.final_tier = attempts, tier
        record.final_model = attempts[-1].model
        headers = lifecycle.answer_headers(
            runtime,
            record.request_id,
            decision.route,
            (tier, attempts[-1].model),
            escalations=0,  # embeddings have no acceptance: a later tier is a fallback
            fallbacks=len(attempts) - 1,
            degraded=False,
        )
        headers.update(handled.admission.answer_headers())
        headers["x-cascade-reason"] = reason(decision, attempts)
        return web.Response(
            body=orjson.dumps(answer), content_type="application/json", headers=headers
        )
