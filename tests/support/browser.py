"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client): open a
page, collect console errors, exceptions and network requests, evaluate, screenshot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.processes import free_port


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("tests need Chromium (Debian: apt-get install chromium)")


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)


class _Session:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, report: PageReport) -> None:
        self.ws, self.report = ws, report
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.loaded = asyncio.Event()

    async def listen(self) -> None:
        async for message in self.ws:
            data = message.json()
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Page.loadEventFired":
                self.loaded.set()
            elif method == "Runtime.exceptionThrown":
                self.report.console_errors.append(str(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                self.report.console_errors.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.report.console_errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                self.report.requests.append(params["request"]["url"])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[number] = future
        await self.ws.send_json({"id": number, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))


def _removed(folder: str) -> None:
    """Remove a Chromium profile: its helper processes may still write to it for a moment
    after the browser has exited ("Directory not empty" on the first try)."""
    for _ in range(20):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _chromium() -> Iterator[str]:
    port = free_port()
    profile = tempfile.mkdtemp()
    try:
        process = subprocess.Popen(
            [
                chromium_binary(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "--window-size=1400,1800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        _removed(profile)


def open_page(path: Path, expressions: dict[str, str], screenshot: Path) -> PageReport:
    """Load `path`, evaluate each expression after the load event, save a full-page PNG."""
    report = PageReport()
    with _chromium() as base:
        png = asyncio.run(_drive(base, path.resolve().as_uri(), expressions, report))
    screenshot.write_bytes(png)
    return report


async def _debugger_url(http: aiohttp.ClientSession, base: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.get(f"{base}/json/list") as response:
                pages = [t for t in await response.json() if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("Chromium did not start")
        await asyncio.sleep(0.2)


async def _drive(base: str, uri: str, expressions: dict[str, str], report: PageReport) -> bytes:
    async with aiohttp.ClientSession() as http:
        url = await _debugger_url(http, base)
        async with http.ws_connect(url, max_msg_size=0) as ws:
            session = _Session(ws, report)
            listener = asyncio.create_task(session.listen())
            for domain in ("Page", "Runtime", "Log", "Network"):
                await session.call(f"{domain}.enable")
            await session.call("Page.navigate", url=uri)
            await asyncio.wait_for(session.loaded.wait(), 30)
            await asyncio.sleep(0.3)  # the page's own load handler runs after the event
            for name, expression in expressions.items():
                result = await session.call(
                    "Runtime.evaluate", expression=expression, returnByValue=True
                )
                report.values[name] = result["result"].get("value")
            size = (await session.call("Page.getLayoutMetrics"))["cssContentSize"]
            shot = await session.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    return base64.b64decode(shot["data"])
