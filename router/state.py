"""Application state: typed keys and the runtime built from one policy version."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router.backends.base import Backend
from router.backends.local_llama import LocalLlamaBackend
from router.cascade import Cascade
from router.ids import RequestIds
from router.ledger import Ledger
from router.metrics import Metrics
from router.policy import LoadedPolicy
from router.rules import KeyIndex, needs_prompt_tokens, rule_classifiers
from router.settings import Settings


@dataclass(slots=True)
class Runtime:
    """Everything one policy version serves with. Swapped whole, never edited in place."""

    loaded: LoadedPolicy
    backends: dict[str, Backend | None]
    cascade: Cascade = field(init=False)
    keys: KeyIndex = field(init=False)
    rules_need_tokens: bool = field(init=False)
    rule_classifiers: tuple[str, ...] = field(init=False)  # router artifacts rules match on
    active: int = 0  # requests running on this runtime
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        policy = self.loaded.policy
        self.cascade = Cascade(
            policy, self.backends, self.loaded.routers, self.loaded.acceptance_models
        )
        self.keys = KeyIndex(policy)
        self.rules_need_tokens = needs_prompt_tokens(policy)
        self.rule_classifiers = rule_classifiers(policy)
        self.idle.set()

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
        return {
            name: ("ready" if backend is not None else "not configured")
            for name, backend in self.backends.items()
        }

    @property
    def token_counter(self) -> LocalLlamaBackend | None:
        """The local tier's tokenizer counts prompt tokens for the gateway's limit."""
        return next((b for b in self.backends.values() if isinstance(b, LocalLlamaBackend)), None)


@dataclass(slots=True)
class RuntimeSlot:
    """Holds the active runtime; a reload replaces `current` in one assignment."""

    current: Runtime | None = None


SETTINGS = web.AppKey("settings", Settings)
RUNTIME = web.AppKey("runtime", RuntimeSlot)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LEDGER = web.AppKey("ledger", Ledger)
METRICS = web.AppKey("metrics", Metrics)
LOGGER = web.AppKey("logger", FilteringBoundLogger)
REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
