"""Run the application: aiohttp's `run_app`, with one change at the protocol level.

Requests aiohttp rejects before any handler runs (a broken request line, bad framing,
oversized headers) are answered in OpenAI's JSON error shape instead of aiohttp's plain text,
and logged without their raw bytes (a malformed `Authorization` header must not reach the
logs). Everything else is aiohttp's: signals, graceful shutdown, cleanup contexts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_runner import GracefulExit
from structlog.typing import FilteringBoundLogger

from router.errors import APIError
from router.server.info import own_metrics
from router.server.siblings import serve_own
from router.settings import Settings

_SHUTDOWN_TIMEOUT_S = 60.0


def _protocol_error(status: int, exc: BaseException | None) -> APIError:
    if isinstance(exc, LineTooLong):
        return APIError(
            431, "a request header or the request line is too long", code="request_header_too_large"
        )
    if status >= 500:
        return APIError(status, "internal error", type_="server_error", code="internal_error")
    return APIError(status, "malformed HTTP request", code="bad_request")


def error_response(error: APIError) -> web.Response:
    """An OpenAI error as the HTTP response a client gets."""
    return web.Response(
        status=error.status,
        body=error.encoded(),
        content_type="application/json",
        headers=error.headers,
    )


class _Protocol(RequestHandler):
    """aiohttp's connection handler; its own error responses in OpenAI's shape."""

    logger_: FilteringBoundLogger | None = None

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started on this connection")
        error = _protocol_error(status, exc)
        if self.logger_ is not None:  # the exception's text can hold raw header bytes
            self.logger_.info(
                "bad_http_request", status=error.status, error=type(exc).__name__ if exc else None
            )
        response = error_response(error)
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's server, with our connection handler and a per-address connection limit."""

    def __init__(
        self, *args: Any, logger: FilteringBoundLogger, max_per_ip: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._cascade_logger = logger
        self._max_per_ip = max_per_ip
        self._per_ip: Counter[str] = Counter()
        self._peers: dict[RequestHandler, str] = {}

    def __call__(self) -> RequestHandler:
        protocol = _Protocol(self, loop=self._loop, **self._kwargs)
        protocol.logger_ = self._cascade_logger
        return protocol

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._peers[handler] = address
        self._per_ip[address] += 1
        if self._max_per_ip and self._per_ip[address] > self._max_per_ip:
            self._cascade_logger.info("connection_refused", reason="per-address limit")
            handler.force_close()
            transport.close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        address = self._peers.pop(handler, None)
        if address is not None:
            self._per_ip[address] -= 1
            if self._per_ip[address] <= 0:
                del self._per_ip[address]


class _Runner(web.AppRunner):
    def __init__(
        self, app: web.Application, logger: FilteringBoundLogger, max_per_ip: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._logger = logger
        self._max_per_ip = max_per_ip

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, built again with our connection handler.
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            logger=self._logger,
            max_per_ip=self._max_per_ip,
            **server._kwargs,  # aiohttp keeps the connection handler's options here
        )


async def _serve(
    app: web.Application, logger: FilteringBoundLogger, settings: Settings, reuse_port: bool
) -> None:
    runner = _Runner(
        app,
        logger,
        settings.max_connections_per_ip,
        handle_signals=True,
        access_log=None,
        handler_cancellation=True,  # a client that leaves cancels its request's work
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        # aiohttp closes a connection whose request head has not arrived by then (it arms
        # this timer when the connection opens), and an idle keep-alive one.
        keepalive_timeout=settings.header_timeout_s,
    )
    await runner.setup()
    stop_own_metrics = None
    try:
        await web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port).start()
        if settings.metrics_folder is not None:  # one of --workers: its siblings ask it
            stop_own_metrics = await serve_own(settings.metrics_folder, lambda: own_metrics(app))
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        if stop_own_metrics is not None:
            await stop_own_metrics()
        await runner.cleanup()


def serve(
    app: web.Application,
    logger: FilteringBoundLogger,
    settings: Settings,
    *,
    reuse_port: bool,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (as `web.run_app`)."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, logger, settings, reuse_port))
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
