"""Each worker of `cascade serve --workers N` serves its own metrics on a unix socket in a
folder only this user can enter (`worker-<pid>.sock`); the worker a scrape reaches asks its
siblings there and merges their expositions with its own (router/observe/merge.py), so one
scrape of the shared port covers the process tree. A socket nobody answers on (a worker that
died) is removed; a sibling slower than a second is left out of that scrape (logged)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from router.observe.merge import merge_expositions

_ASK_TIMEOUT_S = 1.0


def own_socket(folder: Path) -> Path:
    return folder / f"worker-{os.getpid()}.sock"


async def serve_own(folder: Path, render: Callable[[], bytes]) -> Callable[[], Awaitable[None]]:
    """Serve this worker's own exposition on its socket; returns what stops it."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    path = own_socket(folder)
    path.unlink(missing_ok=True)
    await web.UnixSite(runner, str(path)).start()
    path.chmod(0o600)

    async def stop() -> None:
        await runner.cleanup()
        path.unlink(missing_ok=True)

    return stop


async def _ask(path: Path, logger: FilteringBoundLogger) -> tuple[str, bytes] | None:
    worker = path.stem.removeprefix("worker-")
    try:
        async with (
            aiohttp.UnixConnector(path=str(path)) as connector,
            aiohttp.ClientSession(connector=connector) as session,
            session.get(
                "http://worker/metrics", timeout=aiohttp.ClientTimeout(total=_ASK_TIMEOUT_S)
            ) as response,
        ):
            return worker, await response.read()
    except (ConnectionRefusedError, FileNotFoundError, aiohttp.ClientConnectorError):
        with contextlib.suppress(OSError):
            path.unlink()  # noqa: ASYNC240 - its worker is gone (one local unlink)
    except (TimeoutError, aiohttp.ClientError) as exc:
        logger.warning("metrics_sibling_unanswered", worker=worker, error=str(exc)[:200])
    return None


async def merged(folder: Path, own: bytes, logger: FilteringBoundLogger) -> bytes:
    """This worker's exposition merged with every sibling's that answers."""
    mine = own_socket(folder)
    sockets = sorted(folder.glob("worker-*.sock"))  # noqa: ASYNC240 - a few local names
    others = [path for path in sockets if path != mine]
    answers = await asyncio.gather(*(_ask(path, logger) for path in others))
    found = [(str(os.getpid()), own), *(answer for answer in answers if answer is not None)]
    return merge_expositions(found)
