"""Application state: typed keys and the runtime built from one policy version."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router.backends.base import Backend
from router.backends.local_llama import LocalLlamaBackend
from router.cascade import Cascade
from router.ids import RequestIds
from router.metrics import Metrics
from router.policy import LoadedPolicy
from router.records import RecordSink
from router.settings import Settings


@dataclass(slots=True)
class Runtime:
    """Everything one policy version serves with. Swapped whole, never edited in place."""

    loaded: LoadedPolicy
    backends: dict[str, Backend | None]
    cascade: Cascade

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
RECORDS = web.AppKey("records", RecordSink)
METRICS = web.AppKey("metrics", Metrics)
LOGGER = web.AppKey("logger", FilteringBoundLogger)
REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
