"""Requests leave no reference cycles: what a request allocates is freed when it ends, by
reference counting, not held until the cyclic garbage collector walks it (under a hostile
tenant, a few hundred failed requests' tracebacks and frames made 10 ms collections on the
event loop). An exception raised from a local variable, or kept with its traceback by an
object its own frames hold, is such a cycle."""

from __future__ import annotations

import collections
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from router.backends.base import BackendError, GenerationParams, Message, Prompt
from router.backends.openai_http import OpenAIHTTPBackend, OpenAITier
from tests.support.app import Serve
from tests.support.fake_upstream import Faults, create_app
from tests.support.fakes import FakeBackend


class _Failing(FakeBackend):
    """A tier whose every call fails afresh, as a real upstream's does (a new exception)."""

    async def complete(self, prompt: Any, params: Any) -> Any:
        raise BackendError("error", "upstream 500", status=500)

    async def stream(self, prompt: Any, params: Any) -> Any:
        raise BackendError("error", "upstream 500", status=500)
        yield  # an async generator, as the real ones


@pytest.fixture
def cycles() -> Iterator[list[object]]:
    """What the collector finds unreachable meanwhile (kept for the test to look at)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


CHAT = "/v1/chat/completions"


def _ask(stream: bool) -> dict[str, object]:
    return {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("failing", [False, True], ids=["answered", "failed"])
async def test_a_request_leaves_no_reference_cycles(
    serve: Serve, cycles: list[object], failing: bool
) -> None:
    tiers = (
        {"small": _Failing("small"), "large": _Failing("large")}
        if failing
        else {
            "small": FakeBackend("small"),
            "large": FakeBackend("large"),
        }
    )
    client, _ = await serve(**tiers)
    for _ in range(2):  # warm: what is created once per server is not a request's
        for stream in (False, True):
            await (await client.post(CHAT, json=_ask(stream))).read()
    gc.collect()
    cycles.clear()
    statuses = []
    for _ in range(3):
        for stream in (False, True):
            response = await client.post(CHAT, json=_ask(stream))
            await response.read()
            statuses.append(response.status)
    refused = await client.post(CHAT, json={"model": "auto", "messages": [], "n": 0})
    assert refused.status == 400
    assert set(statuses) == ({502} if failing else {200})
    gc.collect()
    found = collections.Counter(type(o).__qualname__ for o in cycles)
    assert not cycles, found.most_common(10)


async def test_an_upstream_error_status_is_freed_once_handled() -> None:
    """The real HTTP tier's error (the fakes above raise afresh): made where no frame it
    passes holds it."""
    server = TestServer(create_app(Faults(status=503)))
    await server.start_server()
    freed: list[weakref.ref[BaseException]] = []
    statuses: list[int | None] = []
    try:
        async with aiohttp.ClientSession() as session:
            spec = OpenAITier(type="openai", api_base=str(server.make_url("/v1")), model="fake")
            backend = OpenAIHTTPBackend("large", spec, session)
            prompt = Prompt(messages=(Message("user", "hi"),))
            gc.disable()
            try:
                for _ in range(3):
                    try:
                        await backend.complete(prompt, GenerationParams(max_tokens=4))
                    except BackendError as exc:
                        statuses.append(exc.status)
                        freed.append(weakref.ref(exc))
                assert statuses == [503] * 3
                assert [ref() for ref in freed] == [None] * 3
            finally:
                gc.enable()
    finally:
        await server.close()
