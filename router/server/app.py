"""The aiohttp application: routes, middleware, and resources bound to its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router.cache import ResponseCache
from router.keys.index import is_loopback
from router.ledger import Ledger, open_sink, parse_ledger_url
from router.ledger.node import NodeSink
from router.ledger.owners import Owners
from router.observe.logs import make_logger
from router.observe.loop_lag import LoopLag
from router.observe.metrics import Metrics
from router.observe.rejections import Rejections
from router.observe.tracing import Tracing, tracing_from_env
from router.redact import Redactor
from router.server import embeddings, feedback, generation, info
from router.server.fairness import IntakeGates, KeyGates
from router.server.middlewares import authenticate, request_context
from router.server.offload import Offload
from router.server.reload import RELOADER, PolicyReloader
from router.server.state import (
    CACHE,
    FEEDBACK,
    INTAKE,
    KEY_GATES,
    LEDGER,
    LOGGER,
    METRICS,
    OFFLOAD,
    REDACTOR,
    REJECTIONS,
    RUNTIME,
    SESSION,
    SETTINGS,
    SHADOW,
    TRACING,
    RuntimeSlot,
)
from router.settings import Settings
from router.shadow.autotune import Tuner, TuneRecord
from router.shadow.cap import RedisCap
from router.shadow.runner import ShadowRunner
from router.shadow.shared_windows import SharedWindows

_HARD_BODY_CAP = 64 * 1024 * 1024  # policies set the real limit (limits.max_body_bytes)


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=512, keepalive_timeout=60)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies must never leak across teams
        json_serialize=lambda o: orjson.dumps(o).decode(),
    ) as session:
        app[SESSION] = session
        yield


async def _ledger(app: web.Application) -> AsyncIterator[None]:
    """Open the sink named by CASCADE_LEDGER and its writer; at shutdown (after the last
    request) deliver or spool everything still queued."""
    settings = app[SETTINGS]
    target = parse_ledger_url(settings.ledger_url, settings.redis_url)
    # a worker of --workers with a SQLite ledger hands its records to the node's writer
    socket = settings.ledger_writer_socket
    ledger = Ledger(
        NodeSink(socket) if socket is not None else open_sink(target),
        settings.spool_folder,
        app[LOGGER],
        max_queue=settings.ledger_queue,
        batch_size=settings.ledger_batch,
    )
    if target.scheme == "none":
        app[LOGGER].warning("ledger_off", detail="CASCADE_LEDGER=none: records are discarded")
    app[LEDGER] = ledger
    app[REJECTIONS].submit = ledger.submit  # refusals' summaries go to the ledger too
    app[FEEDBACK] = Owners(settings.feedback_recent, target)
    ledger.start()
    yield
    await app[FEEDBACK].aclose()
    await ledger.aclose()


async def _shadow(app: web.Application) -> AsyncIterator[None]:
    """Shadow checks (router/shadow/): stopped before the ledger closes, so the records of
    checks that finished reach it."""
    metrics = app[METRICS]

    def count(route: str, result: str) -> None:
        metrics.shadow_checks.labels(route, result).inc()

    def tuned(change: TuneRecord) -> None:
        app[LOGGER].info(
            "threshold_tuned",
            route=change.route,
            tier=change.tier,
            threshold_from=change.threshold_from,
            threshold_to=change.threshold_to,
            wanted=change.wanted,
            checks=change.checks,
            estimated_quality=change.estimated_quality,
            policy_version=change.policy_version,
        )

    def unavailable(event: str) -> Callable[[Exception], None]:
        return lambda error: app[LOGGER].warning(event, error=str(error))

    # what policies may share through Redis: autotune's windows, the checks' daily cap
    url = app[SETTINGS].redis_url
    windows = SharedWindows(url, unavailable("autotune_store_unavailable")) if url else None
    cap = RedisCap(url, unavailable("shadow_cap_unavailable")) if url else None
    tuner = Tuner(app[LEDGER].submit, tuned, windows)
    runner = app[SHADOW] = ShadowRunner(app[LEDGER].submit, count, tuner=tuner, shared_cap=cap)
    runner.start()
    yield
    await runner.aclose()


async def _cache(app: web.Application) -> AsyncIterator[None]:
    """The response cache's stores (a policy chooses which routes use which)."""
    settings, logger, metrics = app[SETTINGS], app[LOGGER], app[METRICS]

    def unavailable(error: Exception) -> None:
        metrics.cache_errors.inc()
        logger.warning("cache_unavailable", error=str(error))

    app[CACHE] = ResponseCache(settings.cache_store, settings.cache_redis_url, unavailable)
    yield
    await app[CACHE].aclose()


async def _policy(app: web.Application) -> AsyncIterator[None]:
    """Load the policy and its backends (the local model is mmap'd here, once), then watch
    the file for changes and reload on SIGHUP."""
    settings = app[SETTINGS]
    reloader = PolicyReloader(
        settings.policy_path,
        app[RUNTIME],
        session=app[SESSION],
        logger=app[LOGGER],
        metrics=app[METRICS],
        redactor=app[REDACTOR],
        poll_interval=settings.policy_poll_s,
        keys_override=settings.keys_path,
        open_address=not is_loopback(settings.host),
        require_auth=not is_loopback(settings.host) and not settings.allow_unauthenticated,
        redis_url=settings.redis_url,
        cache=app[CACHE],
    )
    app[RELOADER] = reloader
    await reloader.start()
    watcher = asyncio.create_task(reloader.run(), name="policy-watch")
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)
        hup = True
    yield
    if hup:
        loop.remove_signal_handler(signal.SIGHUP)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await reloader.aclose()


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    """Spans still batched are exported at shutdown (after the last request)."""
    yield
    await asyncio.to_thread(app[TRACING].shutdown)


async def _offload(app: web.Application) -> AsyncIterator[None]:
    """The worker that checks large or dense bodies first (CASCADE_OFFLOAD_BYTES and
    CASCADE_OFFLOAD_OBJECTS; none when the bytes are 0): started
    now when the server tells teams apart, else when the first large body arrives while
    another team is asking (router/server/offload.py)."""
    if not app[SETTINGS].offload_bytes:
        yield
        return
    logger = app[LOGGER]
    offload = app[OFFLOAD] = Offload(
        app[SETTINGS].offload_bytes,
        min_objects=app[SETTINGS].offload_objects,
        on_lost=lambda status: logger.warning("offload_worker_lost", exit_status=status),
    )
    runtime = app[RUNTIME].current  # loaded by `_policy`, before this
    if runtime is not None and runtime.keys.enforced:
        offload.start()  # ready in ~1 s; large bodies are checked on the loop until then
    try:
        yield
    finally:
        offload.close()


async def _loop_lag(app: web.Application) -> AsyncIterator[None]:
    """Measure how long the event loop is held (router/observe/loop_lag.py)."""
    lag = LoopLag(app[METRICS].registry, app[LOGGER], app[SETTINGS].loop_lag_warn_s)
    task = asyncio.create_task(lag.run(), name="loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _rejections(app: web.Application) -> AsyncIterator[None]:
    """Summarise refused requests once a second."""
    task = asyncio.create_task(app[REJECTIONS].run(), name="rejections")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app[REJECTIONS].flush()


def create_app(
    settings: Settings,
    logger: FilteringBoundLogger | None = None,
    redactor: Redactor | None = None,
    tracing: Tracing | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[request_context, authenticate], client_max_size=_HARD_BODY_CAP
    )
    app[SETTINGS] = settings
    app[REDACTOR] = redactor or Redactor.from_environment(os.environ)
    app[LOGGER] = logger or make_logger(settings.log_level, redactor=app[REDACTOR])
    app[METRICS] = Metrics()
    app[TRACING] = tracing or tracing_from_env()
    app[METRICS].workers_replaced.set(settings.workers_replaced)
    app[REJECTIONS] = Rejections(app[METRICS].registry, app[LOGGER])
    app[RUNTIME] = RuntimeSlot()
    paced = app[METRICS].intake_paced
    app[INTAKE] = IntakeGates(
        settings.intake_per_team,
        share=settings.intake_share,
        pass_budget_s=settings.intake_pass_budget_s,
        on_paced=lambda team, seconds: paced.labels(team).inc(seconds),
    )
    app[KEY_GATES] = KeyGates()
    app.cleanup_ctx.extend(
        [
            _tracing,
            _http_session,
            _ledger,
            _shadow,
            _cache,
            _policy,
            _rejections,
            _loop_lag,
            _offload,
        ]
    )
    app.router.add_post("/v1/chat/completions", generation.chat_completions)
    app.router.add_post("/v1/completions", generation.completions)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    app.router.add_post("/v1/responses", generation.responses)
    app.router.add_get("/v1/models", info.models)
    app.router.add_get("/healthz", info.healthz)
    app.router.add_get("/readyz", info.readyz)
    app.router.add_get("/metrics", info.metrics)
    app.router.add_get("/admin/policy", info.admin_policy)
    app.router.add_get("/admin/spend", info.admin_spend)
    app.router.add_get("/v1/spend", info.spend)
    app.router.add_post("/v1/feedback", feedback.post_feedback)
    app.router.add_get("/openapi.json", info.openapi)
    return app
