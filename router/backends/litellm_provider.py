"""A tier for every provider litellm speaks. litellm is imported on first use only: the
import costs ~2.8 s and ~200 MB, and OpenAI-compatible upstreams never need it."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal

import aiohttp

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
from router.backends.spec import RemoteTierSpec
from router.backends.upstream import request_body
from router.observe.trace_context import OUTBOUND

# What OpenAI's own bodies hold: litellm's objects add provider fields a client never asked for.
_COMPLETION_KEYS = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "choices", "usage"}
)
_EMBEDDING_KEYS = frozenset({"object", "data", "model", "usage"})
_PROVIDER_ONLY = "provider_specific_fields"


def _openai_body(value: Any, keys: frozenset[str] = _COMPLETION_KEYS) -> dict[str, Any]:
    """A litellm response or chunk as the OpenAI body it stands for."""
    body = value.model_dump() if hasattr(value, "model_dump") else dict(value)
    found = {key: item for key, item in body.items() if key in keys and item is not None}
    for choice in found.get("choices") or ():
        if isinstance(choice, dict):
            choice.pop(_PROVIDER_ONLY, None)
            for part in ("message", "delta"):
                if isinstance(choice.get(part), dict):
                    choice[part].pop(_PROVIDER_ONLY, None)
    return found


class LiteLLMTier(RemoteTierSpec):
    """Any other provider litellm speaks (`anthropic/...`, `bedrock/...`, ...)."""

    type: Literal["litellm"]

    @property
    def configured(self) -> bool:
        return bool(self.model)


def _import_litellm() -> Any:
    # Use the price map bundled with the package; never fetch one from the internet.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class LiteLLMBackend:
    """Backend contract over `litellm.acompletion` (completion prompts as one user message)."""

    queue_depth = 0  # litellm queues nothing of ours
    state: TierState = "ready"

    def __init__(self, name: str, spec: LiteLLMTier) -> None:
        self.name = name
        self.model = spec.model
        self._spec = spec
        self._litellm: Any = None

    def _call_args(self, prompt: Prompt, params: GenerationParams, stream: bool) -> dict[str, Any]:
        args = request_body(self.model, prompt, params, stream=stream, chat=True)
        args["stream"] = stream
        args["timeout"] = self._spec.timeout_s
        if self._spec.api_base:
            args["api_base"] = self._spec.api_base
        if self._spec.api_key_env and (key := os.environ.get(self._spec.api_key_env)):
            args["api_key"] = key
        return args

    async def count_tokens(self, prompt: Prompt) -> int | None:
        return None

    async def _acompletion(self, args: dict[str, Any]) -> Any:
        if self._litellm is None:
            self._litellm = _import_litellm()
        return await self._call(self._litellm.acompletion, args)

    async def _call(self, call: Any, args: dict[str, Any]) -> Any:
        litellm = self._litellm
        if traced := OUTBOUND.get():  # the request's traceparent (router/observe/tracing.py)
            args = {**args, "extra_headers": {**(args.get("extra_headers") or {}), **traced}}
        try:
            return await call(**args)
        except litellm.Timeout:
            raise BackendError("timeout", f"tier '{self.name}' timed out") from None
        except litellm.APIConnectionError as exc:
            raise BackendError("unavailable", f"tier '{self.name}' unreachable: {exc}") from None
        except litellm.APIError as exc:
            raise BackendError(
                "error", f"tier '{self.name}' failed: {exc}", getattr(exc, "status_code", None)
            ) from None
        except Exception as exc:  # noqa: BLE001 - provider SDKs raise many types
            raise BackendError(
                "error", f"tier '{self.name}' failed: {type(exc).__name__}"
            ) from None

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        started = time.perf_counter()
        response = await self._acompletion(self._call_args(prompt, params, stream=False))
        body = _openai_body(response)
        try:
            choice = body["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise BackendError("error", f"tier '{self.name}' sent a malformed response") from None
        message = choice.get("message") or {}
        usage = Usage.of(body.get("usage"))
        return Completion(
            text=str(message.get("content") or ""),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=str(body.get("model") or self.model),
            ttft_ms=(time.perf_counter() - started) * 1000,
            raw=body,  # tool calls, refusal, logprobs: in OpenAI's shape, as litellm made it
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_source=usage.source,
            upstream_id=upstream_id(body),
        )

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        response = await self._acompletion(self._call_args(prompt, params, stream=True))
        finish, usage, pieces = None, None, 0
        model = self.model
        try:
            async for chunk in response:
                raw = _openai_body(chunk)
                model = str(raw.get("model") or model)
                event = StreamEvent(raw=raw)  # tool-call deltas and all
                if raw.get("usage"):
                    usage = Usage.of(raw["usage"])
                    event.prompt_tokens = usage.prompt_tokens  # should the stream break later
                    event.completion_tokens = usage.completion_tokens
                for choice in raw.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                    event.text += str((choice.get("delta") or {}).get("content") or "")
                pieces += bool(event.text)
                yield event
        except Exception as exc:  # noqa: BLE001 - provider SDKs raise many types
            raise BackendError("error", f"tier '{self.name}' failed mid-stream: {exc}") from None
        usage = usage or Usage(completion_tokens=pieces)  # no usage sent: estimated
        yield StreamEvent(
            finish_reason=finish or "stop",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=model,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_source=usage.source,
        )

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`litellm.aembedding` with the client's fields and the tier's model and key."""
        args: dict[str, Any] = {**body, "model": self.model, "timeout": self._spec.timeout_s}
        if self._spec.api_base:
            args["api_base"] = self._spec.api_base
        if self._spec.api_key_env and (key := os.environ.get(self._spec.api_key_env)):
            args["api_key"] = key
        if self._litellm is None:
            self._litellm = _import_litellm()
        response = await self._call(self._litellm.aembedding, args)
        return _openai_body(response, _EMBEDDING_KEYS)

    async def aclose(self) -> None:
        """litellm keeps no per-tier resources of ours."""


async def _build(name: str, spec: LiteLLMTier, _: aiohttp.ClientSession) -> LiteLLMBackend:
    return LiteLLMBackend(name, spec)


TYPE = BackendType("litellm", LiteLLMTier, False, _build, REMOTE_FEATURES)
