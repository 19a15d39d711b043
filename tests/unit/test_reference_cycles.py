"""Requests leave no reference cycles: what a request allocates is freed when it ends, by
reference counting, not held until the cyclic garbage collector walks it (under a hostile
tenant, a few hundred failed requests' tracebacks and frames made 10 ms collections on the
event loop). An exception raised from a local variable, or kept with its traceback by an
object its own frames hold, is such a cycle."""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from router.backends.base import BackendError
from tests.support.app import Serve
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
