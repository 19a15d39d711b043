"""Build the backends a policy names: tier `type` -> backend class."""

from __future__ import annotations

import aiohttp

from router.backends.base import Backend
from router.backends.litellm_provider import LiteLLMBackend
from router.backends.local_llama import LocalLlamaBackend
from router.backends.openai_http import OpenAIHTTPBackend
from router.policy.model import LiteLLMTier, LlamaCppTier, OpenAITier, Policy


async def build_backends(
    policy: Policy, session: aiohttp.ClientSession
) -> dict[str, Backend | None]:
    """One backend per tier; None for a remote tier with nothing configured (it degrades)."""
    backends: dict[str, Backend | None] = {}
    for name, spec in policy.tiers.items():
        match spec:
            case LlamaCppTier():
                backends[name] = await LocalLlamaBackend.load(name, spec)
            case OpenAITier():
                backends[name] = OpenAIHTTPBackend(name, spec, session) if spec.configured else None
            case LiteLLMTier():
                backends[name] = LiteLLMBackend(name, spec)
    return backends


async def close_backends(backends: dict[str, Backend | None]) -> None:
    for backend in backends.values():
        if backend is not None:
            await backend.aclose()
