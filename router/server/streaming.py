"""A streamed answer on the wire: the SSE response opened with the answer's headers, then a
whole answer as events, or a live stream relayed chunk by chunk (gathered for the cache or a
shadow check when asked). A failure after the first byte is an error event; a client that
leaves is recorded as gone."""

from __future__ import annotations

import contextlib

from aiohttp import web

from router.api.render import StreamWriter
from router.api.surfaces import Exchange
from router.backends.base import BackendError
from router.cache import Fold
from router.errors import APIError
from router.outcomes import LiveStream, Outcome
from router.records import DecisionRecord
from router.redact import Redactor

CLIENT_CLOSED = 499  # the record's http_status when the client left first (nginx's code)


async def stream(
    request: web.Request,
    record: DecisionRecord,
    outcome: Outcome,
    *,
    exchange: Exchange,
    headers: dict[str, str],
    fold: Fold | None,
    redactor: Redactor,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    writer = exchange.writer(record.request_id, outcome.model)
    await response.prepare(request)
    await _stream_body(response, writer, record, outcome, redactor=redactor, fold=fold)
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
        # cut off or gone silent (past its idle limit) after it began: truncated
        cut = exc.kind in ("truncated", "timeout")
        record.status = "upstream_truncated" if cut else "error"
        record.error = exc.message
        message = redactor(exc.message)
        error = APIError(502, message, type_="upstream_error", code="upstream_error")
        await response.write(writer.failed(error))
    except ConnectionResetError:
        record.status, record.http_status = "client_gone", CLIENT_CLOSED
