"""Build the backends a policy names: tier `type` -> backend class."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp

from router.backends.base import Backend
from router.backends.litellm_provider import LiteLLMBackend
from router.backends.local_llama import LocalLlamaBackend
from router.backends.openai_http import OpenAIHTTPBackend
from router.policy.model import LiteLLMTier, LlamaCppTier, OpenAITier, Policy, TierSpec


async def build_backend(
    name: str, spec: TierSpec, session: aiohttp.ClientSession
) -> Backend | None:
    """The backend of one tier; None for a remote tier with nothing configured (it degrades)."""
    match spec:
        case LlamaCppTier():
            return await LocalLlamaBackend.load(name, spec)
        case OpenAITier():
            return OpenAIHTTPBackend(name, spec, session) if spec.configured else None
        case LiteLLMTier():
            return LiteLLMBackend(name, spec)


async def build_backends(
    policy: Policy,
    session: aiohttp.ClientSession,
    previous: tuple[Policy, Mapping[str, Backend | None]] | None = None,
) -> dict[str, Backend | None]:
    """One backend per tier. A tier whose name and settings are unchanged from `previous`
    keeps its backend (a reload does not reload an unchanged model)."""
    backends: dict[str, Backend | None] = {}
    built: list[Backend | None] = []
    try:
        for name, spec in policy.tiers.items():
            if previous is not None and previous[0].tiers.get(name) == spec:
                backends[name] = previous[1][name]
            else:
                backends[name] = await build_backend(name, spec, session)
                built.append(backends[name])
    except BaseException:
        await close_backends(built)  # a half-built policy leaks nothing
        raise
    return backends


async def close_backends(backends: Iterable[Backend | None]) -> None:
    for backend in backends:
        if backend is not None:
            await backend.aclose()
