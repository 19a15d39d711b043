"""Application state: typed keys and the runtime built from one policy version."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router.backends.base import Backend, Prompt
from router.backends.registry import local_tiers
from router.budgets import Limiter
from router.budgets.limiter import max_cost_nano
from router.cache import PolicyCache, ResponseCache
from router.cascade import Cascade
from router.keys.index import Caller, KeyIndex
from router.ledger import Ledger
from router.ledger.owners import Owners
from router.observe.metrics import Metrics
from router.observe.rejections import Rejections
from router.observe.tracing import Tracing
from router.policy import LoadedPolicy
from router.redact import Redactor
from router.routing import Plan, needs_prompt_tokens
from router.server.fairness import IntakeGates, KeyGates
from router.server.offload import Offload
from router.settings import Settings
from router.shadow.runner import ShadowRunner


@dataclass(slots=True)
class Runtime:
    """Everything one policy version serves with. Swapped whole, never edited in place."""

    loaded: LoadedPolicy
    backends: dict[str, Backend | None]
    keys: KeyIndex  # replaced (one assignment) when the keys file changes
    limiter: Limiter
    cache: PolicyCache | None = None  # None: no cache in this server (unit tests)
    # calls in progress per tier, shared by every runtime of the server (/metrics)
    in_flight: Counter[str] = field(default_factory=Counter)
    cascade: Cascade = field(init=False)
    local_tiers: frozenset[str] = field(init=False)
    rules_need_tokens: bool = field(init=False)
    active: int = 0  # requests running on this runtime
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        policy = self.loaded.policy
        self.cascade = Cascade(
            policy, self.backends, self.loaded.acceptance_models, in_flight=self.in_flight
        )
        self.rules_need_tokens = needs_prompt_tokens(policy)
        self.local_tiers = local_tiers(policy)
        self.idle.set()

    def max_cost_nano(self, plan: Plan, prompt_tokens: int, output_tokens: int) -> int:
        """What a plan could cost at most: every tier it may call (fallbacks included),
        each at `prompt_tokens` in and `output_tokens` out (what a budget reserves)."""
        return max_cost_nano(self.loaded.policy, plan, prompt_tokens, output_tokens)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[Runtime]:
        """Hold this runtime for one request (a reload retires it only when none do)."""
        self.active += 1
        self.idle.clear()
        try:
            yield self
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()

    def tier_states(self) -> dict[str, str]:
        """ready, not configured, or a breaker's state (`breaker open`, `breaker half_open`)."""
        return {
            name: "not configured"
            if backend is None
            else ("ready" if backend.state == "ready" else f"breaker {backend.state}")
            for name, backend in self.backends.items()
        }

    def breaker_states(self) -> dict[str, str]:
        return {name: b.state for name, b in self.backends.items() if b is not None}

    def queue_depths(self) -> dict[str, int]:
        return {name: b.queue_depth for name, b in self.backends.items() if b is not None}

    async def counts_tokens(self) -> bool:
        """Whether a tier counts prompt tokens exactly (asked of an empty prompt)."""
        return await self.count_tokens(Prompt(text="")) is not None

    async def count_tokens(self, prompt: Prompt) -> int | None:
        """Prompt tokens by the first tier that can count them exactly (a local model's own
        tokenizer); None when none can."""
        for backend in self.backends.values():
            if backend is not None and (tokens := await backend.count_tokens(prompt)) is not None:
                return tokens
        return None


@dataclass(slots=True)
class RuntimeSlot:
    """Holds the active runtime; a reload replaces `current` in one assignment."""

    current: Runtime | None = None


SETTINGS = web.AppKey("settings", Settings)
INTAKE = web.AppKey("intake", IntakeGates)
KEY_GATES = web.AppKey("key_gates", KeyGates)
OFFLOAD = web.AppKey("offload", Offload)
RUNTIME = web.AppKey("runtime", RuntimeSlot)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LEDGER = web.AppKey("ledger", Ledger)
METRICS = web.AppKey("metrics", Metrics)
LOGGER = web.AppKey("logger", FilteringBoundLogger)
REDACTOR = web.AppKey("redactor", Redactor)
REJECTIONS = web.AppKey("rejections", Rejections)
CACHE = web.AppKey("cache", ResponseCache)
TRACING = web.AppKey("tracing", Tracing)
SHADOW = web.AppKey("shadow", ShadowRunner)
FEEDBACK = web.AppKey("feedback", Owners)
REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)  # who is calling (router/server/middlewares.py)
CLIENT_REQUEST_ID = web.RequestKey("client_request_id", str)  # set only when the client sent one
