"""Hot reload: watch the policy file and the keys file (and SIGHUP), swap valid changes in
atomically.

A request holds the runtime it started with until it ends, so in-flight requests finish on
their policy; backends the new policy no longer uses are closed once those requests are
done. An invalid change is logged with its errors, counted, kept for `GET /admin/policy`,
and the last good policy keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router import heap
from router.backends.registry import build_backends, close_backends
from router.backends.spec import RemoteTierSpec
from router.budgets import Limiter, open_store
from router.budgets.store import Store
from router.cache import PolicyCache, ResponseCache
from router.keys.file import KeysError
from router.keys.index import KeyIndex, keys_file_of, load_key_index
from router.observe.metrics import Metrics
from router.policy import LoadedPolicy, PolicyError, load_policy
from router.redact import Redactor
from router.server.state import Runtime, RuntimeSlot

_AUTH_OFF = "the change leaves no API key configured, which would turn auth off"


@dataclass(frozen=True, slots=True)
class Rejection:
    """The last change that failed validation."""

    at: float
    errors: list[str]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class PolicyReloader:
    """Owns the active runtime of one policy file."""

    def __init__(
        self,
        path: Path,
        slot: RuntimeSlot,
        *,
        session: aiohttp.ClientSession,
        logger: FilteringBoundLogger,
        metrics: Metrics,
        redactor: Redactor,
        poll_interval: float,
        keys_override: Path | None = None,
        open_address: bool = False,
        require_auth: bool = False,
        redis_url: str | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.path = path
        self._cache = cache
        self._open_address = open_address  # listening beyond loopback
        # ... without --allow-unauthenticated: a start or a change that leaves no key
        # configured is refused (auth never turns off by a reload).
        self._require_auth = require_auth
        self._redis_url = redis_url
        # by what decides how counters are kept (kind, on error, rate window, leases)
        self._stores: dict[tuple[str, str, int, str], Store] = {}
        self._keys_override = keys_override  # CASCADE_KEYS
        self._keys_file: Path | None = None
        self._keys_seen: tuple[int, int, int] | None = None
        self.slot = slot
        self.last_rejected: Rejection | None = None
        self._session = session
        self._log = logger
        self._metrics = metrics
        self._redactor = redactor
        self._poll = poll_interval
        self._seen = _signature(path)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[str] = Counter()  # every runtime's calls per tier

    async def start(self) -> None:
        """First load: an invalid policy here is fatal (PolicyError propagates)."""
        loaded = await asyncio.to_thread(load_policy, self.path)
        keys = await self._load_keys(loaded)  # an invalid keys file is fatal here too
        if self._require_auth and not keys.enforced:
            raise KeysError(_AUTH_OFF)
        if self._open_address and not keys.enforced:
            self._log.warning("serving_without_auth", reason="no API keys are configured")
        self._learn_secrets(loaded)
        limiter = self._limiter(loaded)
        cache = self._policy_cache(loaded)
        self._check_shadow_caps(loaded)
        backends = await build_backends(loaded.policy, self._session)
        self.slot.current = Runtime(loaded, backends, keys, limiter, cache, self._in_flight)
        heap.settle(thaw=False)
        self._log.info(
            "policy_loaded",
            source=loaded.source,
            version=loaded.version,
            tiers=self.slot.current.tier_states(),
        )

    def request_reload(self) -> None:
        """SIGHUP: check the file now, even if it looks unchanged."""
        self._seen = None
        self._wake.set()

    async def run(self) -> None:
        """Poll the file every `poll_interval` seconds (or when woken) until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            signature = _signature(self.path)
            if signature != self._seen:
                self._seen = signature
                await self.reload()
            elif self._keys_file is not None and _signature(self._keys_file) != self._keys_seen:
                await self.reload_keys()

    async def reload(self) -> None:
        async with self._lock:
            current = self.slot.current
            try:
                loaded = await asyncio.to_thread(load_policy, self.path)
            except PolicyError as exc:
                self._reject(exc.source, exc.errors, current)
                return
            if current is not None and loaded.version == current.loaded.version:
                await self._reload_keys_locked()
                return
            try:
                keys = await self._load_keys(loaded)
            except KeysError as exc:
                self._reject(str(self._keys_file), [str(exc)], current)
                return
            if self._require_auth and not keys.enforced:
                self._reject(loaded.source, [_AUTH_OFF], current)
                return
            try:
                limiter = self._limiter(loaded)
                cache = self._policy_cache(loaded)
                self._check_shadow_caps(loaded)
            except ValueError as exc:
                self._reject(loaded.source, [str(exc)], current)
                return
            self._learn_secrets(loaded)
            previous = (current.loaded.policy, current.backends) if current else None
            try:
                backends = await build_backends(loaded.policy, self._session, previous)
            except Exception as exc:  # noqa: BLE001 - e.g. a GGUF that will not load
                self._reject(loaded.source, [f"cannot start tiers: {exc}"], current)
                return
            self.slot.current = Runtime(loaded, backends, keys, limiter, cache, self._in_flight)
            self._metrics.policy_reloads.labels("applied").inc()
            self._log.info(
                "policy_loaded",
                source=loaded.source,
                version=loaded.version,
                previous=current.loaded.version if current else None,
            )
            if current is not None:
                task = asyncio.create_task(self._retire(current, set(map(id, backends.values()))))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    def _limiter(self, loaded: LoadedPolicy) -> Limiter:
        """The policy's limits over its store (one store per kind, kept across reloads so
        that counters of this process survive a policy change)."""
        spec = loaded.policy.budgets
        key = (spec.store, spec.on_store_error, spec.rate_window_s, spec.leases.model_dump_json())
        if key not in self._stores:
            self._stores[key] = open_store(spec, self._redis_url, self._store_error)
        return Limiter(
            loaded.policy, self._stores[key], clock=time.time, on_error=self._store_error
        )

    def _check_shadow_caps(self, loaded: LoadedPolicy) -> None:
        """A shadow cap or autotune window shared through Redis needs CASCADE_REDIS_URL."""
        if self._redis_url:
            return
        for name, route in loaded.policy.routes.items():
            shadow = route.shadow
            if shadow is not None and shadow.cap_store == "redis":
                raise ValueError(
                    f"routes.{name}.shadow.cap_store is redis but CASCADE_REDIS_URL is not set"
                )
            if shadow is not None and shadow.autotune and shadow.autotune.store == "redis":
                raise ValueError(
                    f"routes.{name}.shadow.autotune.store is redis but CASCADE_REDIS_URL is not set"
                )

    def _policy_cache(self, loaded: LoadedPolicy) -> PolicyCache | None:
        return self._cache.for_policy(loaded.policy) if self._cache is not None else None

    def _store_error(self, error: object) -> None:
        self._metrics.budget_store_errors.inc()
        self._log.warning("budget_store_unavailable", error=str(error))

    async def _load_keys(self, loaded: LoadedPolicy) -> KeyIndex:
        """The key index for `loaded`: its keys and its keys file's (now watched)."""
        keys_file = keys_file_of(loaded.policy, self.path, self._keys_override)
        signature = _signature(keys_file) if keys_file is not None else None
        keys = await asyncio.to_thread(load_key_index, loaded.policy, keys_file)
        self._keys_file, self._keys_seen = keys_file, signature
        return keys

    async def reload_keys(self) -> None:
        """The keys file changed: new keys, expiries and revocations apply to the next
        request; an invalid file is rejected and the last good keys stay."""
        async with self._lock:
            await self._reload_keys_locked()

    async def _reload_keys_locked(self) -> None:
        current = self.slot.current
        if current is None or self._keys_file is None:
            return
        signature = _signature(self._keys_file)
        if signature == self._keys_seen:
            return
        self._keys_seen = signature
        try:
            keys = await asyncio.to_thread(load_key_index, current.loaded.policy, self._keys_file)
        except KeysError as exc:
            self._reject(str(self._keys_file), [str(exc)], current)
            return
        if self._require_auth and not keys.enforced:
            self._reject(str(self._keys_file), [_AUTH_OFF], current)
            return
        current.keys = keys
        self._log.info("keys_loaded", source=str(self._keys_file), keys=len(keys))

    def _learn_secrets(self, loaded: LoadedPolicy) -> None:
        """The keys this policy's tiers use are scrubbed from everything that leaves."""
        names = [
            spec.api_key_env
            for spec in loaded.policy.tiers.values()
            if isinstance(spec, RemoteTierSpec) and spec.api_key_env
        ]
        self._redactor.add(os.environ[name] for name in names if os.environ.get(name))

    def _reject(self, source: str, errors: list[str], current: Runtime | None) -> None:
        self.last_rejected = Rejection(time.time(), errors)
        self._metrics.policy_reloads.labels("rejected").inc()
        self._log.warning(
            "policy_rejected",
            source=source,
            errors=errors,
            active=current.loaded.version if current else None,
        )

    async def _retire(self, old: Runtime, kept: set[int]) -> None:
        """Close the old runtime's unshared backends once its last request has finished,
        then freeze the new runtime's long-lived objects."""
        await old.idle.wait()
        await close_backends(b for b in old.backends.values() if id(b) not in kept)
        del old
        heap.settle()

    async def aclose(self) -> None:
        if self._retiring:  # by now aiohttp has let in-flight requests finish
            _, late = await asyncio.wait(self._retiring, timeout=5)
            for task in late:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        runtime, self.slot.current = self.slot.current, None
        if runtime is not None:
            await close_backends(runtime.backends.values())
        for store in self._stores.values():
            await store.aclose()
        self._stores.clear()


RELOADER = web.AppKey("reloader", PolicyReloader)
