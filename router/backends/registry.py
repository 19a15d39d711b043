"""Tier types: each backend module's `TYPE`, registered here once.

A new backend type is one module (its spec, its backend class, its `TYPE`) plus one entry in
`TYPES`. The policy's tier union, the loader's error messages, the runtime and `cascade
policy explain` are all built from this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import aiohttp

from router.backends import litellm_provider, local_llama, openai_http
from router.backends.base import Backend, BackendType
from router.backends.guard import GuardedBackend
from router.backends.spec import RemoteTierSpec, TierSpecBase

if TYPE_CHECKING:
    from router.policy.model import Policy

TYPES: dict[str, BackendType] = {
    backend.tag: backend for backend in (local_llama.TYPE, openai_http.TYPE, litellm_provider.TYPE)
}


def backend_type(spec: TierSpecBase) -> BackendType:
    return TYPES[spec.type]


def local_tiers(policy: Policy) -> frozenset[str]:
    """The policy's tiers that run in this process (a type registered `local`)."""
    return frozenset(name for name, spec in policy.tiers.items() if TYPES[spec.type].local)


async def build_backend(
    name: str, spec: TierSpecBase, session: aiohttp.ClientSession
) -> Backend | None:
    """The backend of one tier; None for a tier with nothing configured (it degrades). A
    remote tier is built behind its retries and circuit breaker."""
    backend = await backend_type(spec).build(name, spec, session)
    if backend is not None and isinstance(spec, RemoteTierSpec):
        return GuardedBackend(backend, spec.retries, spec.breaker)
    return backend


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
