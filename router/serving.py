"""Run the application: aiohttp's `run_app`, with one change at the protocol level.

Requests aiohttp rejects before any handler runs (a broken request line, bad framing,
oversized headers) are answered in OpenAI's JSON error shape instead of aiohttp's plain text,
and logged without their raw bytes (a malformed `Authorization` header must not reach the
logs). Everything else is aiohttp's: signals, graceful shutdown, cleanup contexts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_runner import GracefulExit
from structlog.typing import FilteringBoundLogger

from router.errors import APIError

_SHUTDOWN_TIMEOUT_S = 60.0


def _protocol_error(status: int, exc: BaseException | None) -> APIError:
    if isinstance(exc, LineTooLong):
        return APIError(
            431, "a request header or the request line is too long", code="request_header_too_large"
        )
    if status >= 500:
        return APIError(status, "internal error", type_="server_error", code="internal_error")
    return APIError(status, "malformed HTTP request", code="bad_request")


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
        response = error.response()
        response.force_close()
        return response


class _Server(web.Server):
    def __init__(self, *args: Any, logger: FilteringBoundLogger, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cascade_logger = logger

    def __call__(self) -> RequestHandler:
        protocol = _Protocol(self, loop=self._loop, **self._kwargs)
        protocol.logger_ = self._cascade_logger
        return protocol


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, logger: FilteringBoundLogger, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._logger = logger

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, built again with our connection handler.
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            logger=self._logger,
            **server._kwargs,  # aiohttp keeps the connection handler's options here
        )


async def _serve(
    app: web.Application, logger: FilteringBoundLogger, host: str, port: int, reuse_port: bool
) -> None:
    runner = _Runner(
        app,
        logger,
        handle_signals=True,
        access_log=None,
        handler_cancellation=True,  # a client that leaves cancels its request's work
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()


def serve(
    app: web.Application,
    logger: FilteringBoundLogger,
    *,
    host: str,
    port: int,
    reuse_port: bool,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully (as `web.run_app`)."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, logger, host, port, reuse_port))
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
