"""The cascade's view of a request: what the executor, the cache and the backends need of it,
free of any wire format (router/api/ builds it from a client's body)."""

from __future__ import annotations

from dataclasses import dataclass

from router.backends.base import GenerationParams, Prompt


@dataclass(frozen=True, slots=True)
class ClientRequest:
    model: str
    prompt: Prompt
    params: GenerationParams
    stream: bool
    include_usage: bool
    features: frozenset[str] = frozenset()  # what a tier must serve to answer it
