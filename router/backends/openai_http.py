"""OpenAI-compatible HTTP tier (vLLM, TGI, llama.cpp server, OpenAI) over a shared session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import replace
from typing import Any, Literal

import aiohttp
import orjson
import yarl
from pydantic import Field

from router.backends.base import (
    REMOTE_FEATURES,
    BackendError,
    BackendType,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
    TierState,
    Usage,
    upstream_id,
)
from router.backends.native_responses import native_body, native_completion, native_event
from router.backends.retry_after import advised_delay
from router.backends.slots import FairSlots, Saturated
from router.backends.spec import RemoteTierSpec
from router.backends.upstream import request_body
from router.observe.trace_context import OUTBOUND

_MAX_ERROR_BYTES = 4096


class OpenAITier(RemoteTierSpec):
    """Any OpenAI-compatible HTTP server: vLLM, TGI, llama.cpp server, OpenAI itself."""

    type: Literal["openai"]
    responses_api: bool = Field(
        False,
        description="The upstream serves POST /responses itself (OpenAI, recent vLLM): "
        "/v1/responses requests reach it as the client sent them, hosted tools and "
        "previous_response_id included, instead of translated to chat completions.",
    )

    @property
    def configured(self) -> bool:
        return self.api_base is not None

    def serves(self, default: frozenset[str]) -> frozenset[str]:
        served = super().serves(default)
        return served | {"responses"} if self.responses_api else served


def _status_error(response: aiohttp.ClientResponse, raw: bytes) -> BackendError:
    """An upstream's error status as a BackendError: its message, code and Retry-After."""
    detail = _error_detail(raw)
    error = BackendError("error", _error_message(response.status, detail, raw), response.status)
    error.retry_after = response.headers.get("Retry-After")
    error.retry_after_s = advised_delay(response.headers)
    error.code = _error_code(detail)
    return error


def _error_detail(raw: bytes) -> object:
    """The `error` of an upstream's error body (OpenAI's shape); None when it has none."""
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return found.get("error") if isinstance(found, dict) else None


def _error_message(status: int, detail: object, raw: bytes) -> str:
    if isinstance(detail, dict) and "message" in detail:
        message = str(detail["message"])
    elif detail is not None and not isinstance(detail, dict):
        message = str(detail)
    else:
        message = raw[:200].decode("utf-8", "replace")
    return f"upstream answered {status}: {message}"


def _error_code(detail: object) -> str | None:
    """An upstream error's `code`, bounded; None when it has none."""
    code = detail.get("code") if isinstance(detail, dict) else None
    return code[:64] if isinstance(code, str) else None


async def lines(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """Each line of an event stream; when its connection breaks, the whole lines that
    arrived before the break first, then the error. aiohttp raises a stream's error before
    the data it has buffered, so lines read late (a busy event loop) would be lost with what
    they carried: an answer's id, its usage."""
    while True:
        try:
            line = await content.readline()
        except Exception:
            if content.exception() is None:
                raise
            # what arrived before the break (aiohttp has no public read past its error)
            *whole, _partial = content._read_nowait(-1).split(b"\n")
            for line in whole:
                yield line + b"\n"
            raise
        if not line:
            return
        yield line


async def _chunks(response: aiohttp.ClientResponse) -> AsyncGenerator[dict[str, Any] | None, None]:
    """The JSON objects of a chat completions event stream, then None for its `[DONE]` (a
    stream cut off ends without it). A malformed event among whole ones is skipped; more
    than a few are an error."""
    malformed = 0
    async for line in lines(response.content):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            yield None
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            malformed += 1
            if malformed > _MALFORMED_MOST:
                raise
            continue
        if isinstance(chunk, dict):
            yield chunk


def _choice_text(choice: dict[str, Any], chat: bool, delta: bool) -> str:
    if not chat:
        return str(choice.get("text") or "")
    message = choice.get("delta" if delta else "message") or {}
    return str(message.get("content") or "")


class _FirstByteTimeout(Exception):
    """No response headers (or no first stream event) within the tier's limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _Stalled(Exception):
    """A stream that sent nothing for the tier's idle limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


_MALFORMED_MOST = 3  # malformed events a stream may skip before it counts as broken


@contextlib.contextmanager
def _upstream_errors(tier: str, spec: OpenAITier, doing: str) -> Iterator[None]:
    """The one mapping of client-side failures to BackendError kinds: a connection that
    cannot be made is `unavailable` (the tier is down), each timeout is a `timeout` saying
    which, a stream broken off is `truncated`, anything else once connected is `error`."""
    try:
        yield
    except _FirstByteTimeout as exc:
        message = f"tier '{tier}' sent no response within {exc.seconds:g} s"
        raise BackendError("timeout", message) from None
    except _Stalled as exc:
        message = f"tier '{tier}' stalled: nothing for {exc.seconds:g} s {doing}"
        raise BackendError("timeout", message) from None
    except aiohttp.ConnectionTimeoutError:
        message = f"tier '{tier}' timed out connecting ({spec.connect_timeout_s:g} s)"
        raise BackendError("timeout", message) from None
    except TimeoutError:
        message = f"tier '{tier}' timed out {doing} ({spec.timeout_s:g} s in total)"
        raise BackendError("timeout", message) from None
    except aiohttp.ClientConnectorError as exc:
        raise BackendError("unavailable", f"tier '{tier}' unreachable: {exc}") from None
    except aiohttp.ClientPayloadError as exc:
        raise BackendError("truncated", f"tier '{tier}' broke off {doing}: {exc}") from None
    except aiohttp.ClientError as exc:
        raise BackendError("error", f"tier '{tier}' failed {doing}: {exc}") from None
    except orjson.JSONDecodeError:
        raise BackendError("error", f"tier '{tier}' sent malformed JSON {doing}") from None


class OpenAIHTTPBackend:
    """Backend contract over `POST {api_base}/chat/completions` and `/completions`."""

    def __init__(self, name: str, spec: OpenAITier, session: aiohttp.ClientSession) -> None:
        if spec.api_base is None:
            raise ValueError(f"tier '{name}' has no api_base")
        self.name = name
        self.model = spec.model
        self._spec = spec
        self._chat_url = yarl.URL(f"{spec.api_base}/chat/completions")
        self._completions_url = yarl.URL(f"{spec.api_base}/completions")
        self._embeddings_url = yarl.URL(f"{spec.api_base}/embeddings")
        self._responses_url = yarl.URL(f"{spec.api_base}/responses")
        self._session = session
        self._headers = {"Content-Type": "application/json"}
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._timeout = aiohttp.ClientTimeout(
            total=spec.timeout_s, sock_connect=spec.connect_timeout_s
        )
        # a stream is bounded by its first-event and idle limits, not by a total
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=spec.connect_timeout_s
        )
        self._slots = FairSlots(spec.max_concurrency, spec.max_queue)

    @property
    def queue_depth(self) -> int:
        return self._slots.waiting

    @property
    def state(self) -> TierState:
        return "ready"  # its breaker, if any, is the guard's (router/backends/guard.py)

    async def count_tokens(self, prompt: Prompt) -> int | None:
        return None  # the upstream's tokenizer is not ours to run

    def _native(self, params: GenerationParams) -> bool:
        """Whether this call is a /v1/responses request passed through as sent."""
        return params.native is not None and self._spec.responses_api

    async def _post_prompt(
        self, prompt: Prompt, params: GenerationParams, stream: bool
    ) -> aiohttp.ClientResponse:
        timeout = self._stream_timeout if stream else self._timeout
        if self._native(params):
            body = native_body(self.model, params, stream)
            return await self._post(self._responses_url, body, timeout)
        url = self._chat_url if prompt.is_chat else self._completions_url
        body = request_body(self.model, prompt, params, stream=stream, chat=False)
        return await self._post(url, body, timeout)

    async def _post(
        self, url: yarl.URL, body: Mapping[str, Any], limits: aiohttp.ClientTimeout | None = None
    ) -> aiohttp.ClientResponse:
        """POST to the upstream; an error status raises BackendError with its message and
        Retry-After, a connection closed before any answer is `unavailable`."""
        try:
            traced = OUTBOUND.get()  # the request's traceparent (router/observe/tracing.py)
            headers = {**self._headers, **traced} if traced else self._headers
            response = await self._session.post(
                url, data=orjson.dumps(body), headers=headers, timeout=limits or self._timeout
            )
        except aiohttp.ServerDisconnectedError:  # nothing came back: as if it were down
            message = f"tier '{self.name}' closed the connection before answering"
            raise BackendError("unavailable", message) from None
        if response.status >= 400:
            raw = await response.content.read(_MAX_ERROR_BYTES)
            response.release()
            # made elsewhere: a local of this frame holding it would be a reference cycle
            # through its traceback, for the collector to find (one per failed attempt)
            raise _status_error(response, raw)
        return response

    @contextlib.asynccontextmanager
    async def _first_byte(self, limit: float | None = None) -> AsyncIterator[None]:
        """The tier's first-byte timeout around what must arrive first: a whole answer's
        response (`first_byte_s`), or a stream's first event (`limit`)."""
        seconds = self._spec.first_byte_s if limit is None else limit
        async with asyncio.timeout(seconds) as deadline:
            try:
                yield
            except TimeoutError:
                if deadline.expired() and seconds is not None:
                    raise _FirstByteTimeout(seconds) from None
                raise

    async def _admit(self, team: str, cap: int | None) -> float:
        """A slot, fairly among teams (router/backends/slots.py); the ms it waited."""
        waited = time.perf_counter()
        try:
            await self._slots.acquire(team, cap)
        except Saturated:
            raise BackendError("shed", f"tier '{self.name}' is saturated") from None
        return (time.perf_counter() - waited) * 1000

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        queued_ms = await self._admit(params.tenant, params.tenant_cap)
        started = time.perf_counter()
        try:
            with _upstream_errors(self.name, self._spec, "answering"):
                async with self._first_byte():
                    response = await self._post_prompt(prompt, params, stream=False)
                async with response:
                    raw = await response.read()
                body = orjson.loads(raw)
            if self._native(params):
                answer = native_completion(body, self.model, (time.perf_counter() - started) * 1000)
                answer.queued_ms = queued_ms
                return answer
            choice = body["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise BackendError("error", f"tier '{self.name}' sent a malformed response") from None
        finally:
            self._slots.release(params.tenant)
        usage = Usage.of(body.get("usage"))
        return Completion(
            text=_choice_text(choice, prompt.is_chat, delta=False),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=str(body.get("model") or self.model),
            ttft_ms=(time.perf_counter() - started) * 1000,
            raw=body,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_source=usage.source,
            upstream_id=upstream_id(body),
            queued_ms=queued_ms,
        )

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        """Server-sent events from upstream as StreamEvents; errors before the first event
        raise BackendError, so a caller can still fall back."""
        queued_ms = await self._admit(params.tenant, params.tenant_cap)
        try:
            with _upstream_errors(self.name, self._spec, "streaming"):
                async with contextlib.aclosing(self._events(prompt, params)) as events:
                    try:
                        async with self._first_byte(self._spec.stream_first_s):
                            first = await anext(events)
                    except StopAsyncIteration:
                        return
                    first.queued_ms = queued_ms
                    yield first
                    idle = self._spec.stream_idle_s
                    while True:
                        try:
                            async with asyncio.timeout(idle):
                                event = await anext(events)
                        except StopAsyncIteration:
                            return
                        except TimeoutError:
                            raise _Stalled(idle) from None
                        yield event
        finally:
            self._slots.release(params.tenant)

    async def _events(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        response = await self._post_prompt(prompt, params, stream=True)
        async with response:
            if response.content_type != "text/event-stream":
                raise BackendError(
                    "error",
                    f"tier '{self.name}' answered a stream request with "
                    f"{response.content_type or 'no content type'}, not server-sent events",
                )
            if self._native(params):
                async for event in self._native_events(response):
                    yield event
                return
            finish: str | None = None
            usage: Usage | None = None
            answer_id: str | None = None
            pieces = 0
            model = self.model
            done = False
            async for chunk in _chunks(response):
                if chunk is None:
                    done = True
                    break
                if "error" in chunk:
                    message = _error_message(502, chunk["error"], orjson.dumps(chunk))
                    raise BackendError("error", message)
                model = str(chunk.get("model") or model)
                answer_id = answer_id or upstream_id(chunk)
                event = StreamEvent(raw=chunk)  # tool-call deltas and all
                if chunk.get("usage"):
                    usage = Usage.of(chunk["usage"])
                    event.prompt_tokens = usage.prompt_tokens  # known now, should the
                    event.completion_tokens = usage.completion_tokens  # stream break later
                for choice in chunk.get("choices") or ():
                    event.text += _choice_text(choice, prompt.is_chat, delta=True)
                    finish = choice.get("finish_reason") or finish
                pieces += bool(event.text)
                yield event
            # Without its end marker, a stream that said how it finished is still whole (its
            # usage, asked for, comes after the finish); one that did not was cut off.
            if not done and finish is None:
                raise BackendError(
                    "truncated", f"tier '{self.name}' ended its stream before [DONE]"
                )
            usage = usage or Usage(completion_tokens=pieces)  # no usage sent: estimated
            yield StreamEvent(
                finish_reason=finish or "stop",
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                model=model,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                usage_source=usage.source,
                upstream_id=answer_id,
            )

    async def _native_events(
        self, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[StreamEvent, None]:
        """A Responses event stream, each event passed on as sent; it ends with the Response
        completed (or incomplete), else it was cut off."""
        async for line in lines(response.content):
            if not line.startswith(b"data:"):
                continue  # `event:` lines repeat the data's own `type`
            passed, final = native_event(orjson.loads(line[5:].strip()), self.name)
            yield passed
            if final is not None:
                yield replace(final, model=final.model or self.model)
                return
        raise BackendError("truncated", f"tier '{self.name}' ended its stream before the end")

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST {api_base}/embeddings with the client's fields and the tier's model."""
        await self._admit("", None)
        try:
            with _upstream_errors(self.name, self._spec, "embedding"):
                async with self._first_byte():
                    response = await self._post(self._embeddings_url, {**body, "model": self.model})
                async with response:
                    answer = orjson.loads(await response.read())
        finally:
            self._slots.release("")
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise BackendError("error", f"tier '{self.name}' sent a malformed embeddings answer")
        return answer

    async def aclose(self) -> None:
        """The session is shared and closed by the application."""


async def _build(
    name: str, spec: OpenAITier, session: aiohttp.ClientSession
) -> OpenAIHTTPBackend | None:
    """None without an api_base: the tier is not configured and degrades."""
    return OpenAIHTTPBackend(name, spec, session) if spec.configured else None


TYPE = BackendType("openai", OpenAITier, False, _build, REMOTE_FEATURES)
