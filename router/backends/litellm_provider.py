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
    no_embeddings,
)
from router.backends.spec import RemoteTierSpec
from router.backends.upstream import request_body


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
        litellm = self._litellm
        try:
            return await litellm.acompletion(**args)
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
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model=str(response.model or self.model),
            ttft_ms=(time.perf_counter() - started) * 1000,
        )

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        response = await self._acompletion(self._call_args(prompt, params, stream=True))
        finish, prompt_tokens, completion_tokens, pieces = None, 0, 0, 0
        model = self.model
        try:
            async for chunk in response:
                model = str(getattr(chunk, "model", None) or model)
                if usage := getattr(chunk, "usage", None):
                    prompt_tokens = int(usage.prompt_tokens or 0)
                    completion_tokens = int(usage.completion_tokens or 0)
                for choice in chunk.choices or ():
                    finish = choice.finish_reason or finish
                    if text := choice.delta.content:
                        pieces += 1
                        yield StreamEvent(text=text)
        except Exception as exc:  # noqa: BLE001 - provider SDKs raise many types
            raise BackendError("error", f"tier '{self.name}' failed mid-stream: {exc}") from None
        yield StreamEvent(
            finish_reason=finish or "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens or pieces,
            model=model,
        )

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        raise no_embeddings(self.name)  # not through litellm yet

    async def aclose(self) -> None:
        """litellm keeps no per-tier resources of ours."""


async def _build(name: str, spec: LiteLLMTier, _: aiohttp.ClientSession) -> LiteLLMBackend:
    return LiteLLMBackend(name, spec)


TYPE = BackendType("litellm", LiteLLMTier, False, _build, REMOTE_FEATURES - {"embeddings"})
