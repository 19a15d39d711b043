"""A generation or embeddings request's way in, before it is routed: the runtime it runs on,
its record opened, its body read within the limits (router/api/validation.py has every
rule), its tags, and what the record keeps of the body."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from router.api import validation
from router.api.surfaces import Exchange, Surface, unpack
from router.backends.base import Prompt
from router.errors import APIError, clip
from router.keys.index import Caller
from router.policy import Policy
from router.records import DecisionRecord
from router.redact import Redactor
from router.request import ClientRequest
from router.server.fairness import Turn
from router.server.state import (
    CALLER,
    CLIENT_REQUEST_ID,
    METRICS,
    OFFLOAD,
    REDACTOR,
    REQUEST_ID,
    RUNTIME,
    SETTINGS,
    Runtime,
)


def runtime_of(request: web.Request) -> Runtime:
    """The policy version serving now (503 while the server starts)."""
    runtime = request.app[RUNTIME].current
    if runtime is None:
        raise APIError(503, "the server is starting", type_="server_error", code="not_ready")
    return runtime


def new_record(
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


def tags(request: web.Request, record: DecisionRecord) -> frozenset[str]:
    """The key's tags and the request's `x-cascade-tags`, recorded."""
    found = request[CALLER].tags | validation.header_tags(request.headers.get("x-cascade-tags", ""))
    record.tags = sorted(found)
    return found


async def read_json(request: web.Request, limit: int, max_depth: int, turn: Turn) -> object:
    """The body as JSON: at most `limit` bytes, arrived within the settings' body timeout;
    its parsing charged to the team's turn."""
    data = await read_body(request, limit)
    with turn.charged():
        return validation.json_body(data, max_depth)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body's bytes: at most `limit`, arrived within the settings' body timeout."""
    if request.content_length is not None and request.content_length > limit:
        raise validation.too_large(limit)
    chunks, size = [], 0
    timeout = request.app[SETTINGS].body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(65_536):
                size += len(chunk)
                if size > limit:
                    raise validation.too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise validation.too_slow(timeout) from None
    except RequestPayloadError:  # e.g. a body that is not the gzip it claims to be
        raise validation.unreadable() from None
    return b"".join(chunks)


async def read_client(
    request: web.Request, runtime: Runtime, record: DecisionRecord, surface: Surface, turn: Turn
) -> tuple[Exchange, dict[str, object]]:
    """The validated body (and the JSON it came as); what the record keeps of it is written
    as soon as it is known. Parsing and validating are charged to the team's turn."""
    policy = runtime.loaded.policy
    limits = policy.limits
    data = await read_body(request, limits.max_body_bytes)
    offload = request.app.get(OFFLOAD)
    if offload is not None and turn.contended() and offload.worth(data):
        counted = request.app[METRICS].offloaded
        # a prompt over the limit by its estimate (when that is what decides) is refused there
        estimated = not policy.ledger.log_prompts and not await runtime.counts_tokens()
        try:  # off the loop
            checked = await offload.check(data, surface.endpoint, limits, estimated=estimated)
        except APIError:
            counted.labels("refused").inc()
            raise
        packed = checked.packed
        counted.labels("refused" if packed and packed.too_long else checked.outcome).inc()
        if packed is not None and packed.too_long is not None:  # never rebuilt
            _requested(record, packed.client)
            request[CALLER].allow(packed.client.model)  # a 403 or 404 first, as on the loop
            raise packed.too_long.fresh()  # not the one `packed` holds: no cycle via this frame
        if packed is not None:  # read there: only rebuilt here
            with turn.charged():
                found = orjson.loads(data)  # its depth and shape were checked there
            await asyncio.sleep(0)  # the other requests ready meanwhile run between the halves
            with turn.charged():
                assert isinstance(found, dict)
                return _validated(request, policy, record, unpack(packed, found), found)
    with turn.charged():
        raw = validation.json_body(data, limits.max_json_depth)
        exchange = surface.read(raw, limits)
        return _validated(request, policy, record, exchange, raw)


def _validated(
    request: web.Request, policy: Policy, record: DecisionRecord, exchange: Exchange, raw: object
) -> tuple[Exchange, dict[str, object]]:
    client = exchange.client
    _requested(record, client)
    if policy.ledger.log_prompts:
        record.prompt, record.prompt_truncated = _prompt_text(
            client.prompt, policy.ledger.max_prompt_chars, request.app[REDACTOR]
        )
    return exchange, raw if isinstance(raw, dict) else {}


def _requested(record: DecisionRecord, client: ClientRequest) -> None:
    """What the record keeps of what was asked, as soon as the request is read."""
    record.requested_model, record.stream = clip(client.model), client.stream
    record.user = clip(client.params.user) if client.params.user is not None else None


async def prompt_tokens(runtime: Runtime, client: ClientRequest) -> tuple[int | None, int]:
    """`limits.max_prompt_tokens` enforced (validation.prompt_tokens), counted by the
    runtime's first tier that can."""
    limit = runtime.loaded.policy.limits.max_prompt_tokens
    return await validation.prompt_tokens(
        client.prompt, client.billable, limit, runtime.count_tokens, exact=runtime.rules_need_tokens
    )


def _prompt_text(prompt: Prompt, max_chars: int, redactor: Redactor) -> tuple[str, bool]:
    """The prompt as a record keeps it (ledger.log_prompts): roles, secrets redacted, capped."""
    if prompt.text is not None:
        text = prompt.text
    else:
        text = "\n".join(f"{m.role}: {m.content}" for m in prompt.messages)
    text = redactor(text)
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)
