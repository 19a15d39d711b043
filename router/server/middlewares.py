"""Request id, access log, and the rule that every failure is an OpenAI-style error."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from router.errors import APIError
from router.ids import client_request_id, new_request_id
from router.server.serving import error_response
from router.server.state import (
    CALLER,
    CLIENT_REQUEST_ID,
    INTAKE,
    LOGGER,
    METRICS,
    REDACTOR,
    REQUEST_ID,
    RUNTIME,
)

_RECORDED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _from_http_exception(exc: web.HTTPException) -> APIError:
    reason = exc.reason or "error"
    if exc.status == 404:
        message = (
            "Unknown path. This server speaks /v1/chat/completions, /v1/completions, "
            "/v1/embeddings, /v1/responses, /v1/feedback, /v1/models, /v1/spend, /healthz, "
            "/readyz, /metrics and /openapi.json."
        )
    else:
        message = reason
    return APIError(exc.status, message, code=_HTTP_ERROR_TYPES.get(exc.status))


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request the gateway's own id (the client's, if sane, is kept beside it and
    echoed), turn every failure into an OpenAI error body, and write one access-log line."""
    request_id = new_request_id()
    client_id = client_request_id(request.headers)
    request[REQUEST_ID] = request_id
    if client_id is not None:
        request[CLIENT_REQUEST_ID] = client_id
    started = time.perf_counter()
    log = request.app[LOGGER]
    try:
        response = await handler(request)
    except APIError as exc:
        exc.message = request.app[REDACTOR](exc.message)  # upstream text can echo keys
        response = error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc))
    except Exception:
        log.exception("unhandled", request_id=request_id, path=request.path)
        response = error_response(
            APIError(
                500,
                f"internal error (request id {request_id})",
                type_="server_error",
                code="internal_error",
            )
        )
    if not response.prepared:
        response.headers["x-request-id"] = request_id
        if client_id is not None:
            response.headers["x-client-request-id"] = client_id
    # A completion's decision record already says everything about it: its access line is
    # debug-level unless it failed on our side.
    # Overload refusals (503 with Retry-After) are summarised once a second instead.
    refused = response.status == 503 and "Retry-After" in response.headers
    quiet = request.path in _RECORDED_PATHS and (response.status < 500 or refused)
    (log.debug if quiet else log.info)(
        "request",
        request_id=request_id,
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return response


_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})  # probes and the schema


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every path but the probes and the schema needs a valid key once auth is on (any key
    configured): the caller (team, role, tags, allowed models) is the request's `CALLER`;
    /admin/* needs an admin key, and so does /metrics unless the policy opens it. A refusal
    is counted, and leaves no decision record (an unauthenticated flood must not fill the
    ledger)."""
    runtime = request.app[RUNTIME].current
    if request.path in _PUBLIC_PATHS or runtime is None:
        return await handler(request)  # before the first policy: handlers answer 503
    if request.path == "/metrics" and runtime.loaded.policy.auth.metrics == "open":
        return await handler(request)  # a scraper with no key (auth.metrics: open)
    try:
        caller = runtime.keys.caller(request.headers.get("Authorization"))
        if runtime.keys.enforced and (
            request.path.startswith("/admin/") or request.path == "/metrics"
        ):
            caller.require_admin()
    except APIError as exc:
        request.app[METRICS].auth_refusals.labels(exc.code or str(exc.status)).inc()
        raise
    request[CALLER] = caller
    # its steps share the loop fairly with other teams' (router/server/fairness.py)
    return await request.app[INTAKE].stepped(caller.team, handler(request))
