"""The endpoints that answer about the gateway rather than through it: models, spend, the
active policy, the OpenAPI document, health, readiness and metrics."""

from __future__ import annotations

import os

import orjson
from aiohttp import web

from router.api.openapi import document
from router.records import iso_time
from router.server.intake import runtime_of as _runtime
from router.server.reload import RELOADER
from router.server.siblings import merged
from router.server.state import (
    CACHE,
    CALLER,
    LEDGER,
    LOGGER,
    METRICS,
    RUNTIME,
    SETTINGS,
    SHADOW,
)


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
    """GET /admin/spend: every team the policy names, limits or not (an admin key, by the
    middleware)."""
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


def own_metrics(app: web.Application) -> bytes:
    """This process's exposition."""
    runtime = app[RUNTIME].current
    depths = runtime.queue_depths() if runtime is not None else {}
    states = runtime.breaker_states() if runtime is not None else {}
    return app[METRICS].render(
        depths,
        app[LEDGER].stats(),
        states,
        cache_memory=app[CACHE].memory_size(),
        policy_version=runtime.loaded.version if runtime is not None else None,
        in_flight=runtime.in_flight if runtime is not None else None,
        thresholds=app[SHADOW].tuner.thresholds(runtime.loaded.policy)
        if runtime is not None
        else None,
    )


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; with --workers, every worker's (router.server.siblings.py)."""
    body = own_metrics(request.app)
    folder = request.app[SETTINGS].metrics_folder
    if folder is not None:
        body = await merged(folder, body, request.app[LOGGER])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
