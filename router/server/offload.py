"""Large bodies are checked first in a worker process while another team is asking, so
that a body the gateway refuses costs its event loop only the copy to the worker.

Parsing and validating a body is synchronous: 7 ms for 5,000 tools, 12 ms for a 1 MB body of
2,048 messages. On the serving loop, every other request that becomes ready meanwhile waits
for it, whatever team it belongs to. A worker process, niced, is preempted by the kernel the
moment the serving loop has work (another team's bytes arriving), which the loop cannot do to
itself. So a body of at least `min_bytes` that arrives while another team has asked lately
(router/server/fairness.py) is parsed and validated there first: what the worker refuses is
refused with the same OpenAI error. A chat or completions body it accepts comes back read
(router/api/surfaces.py `Packed`: the request without what is cheaper to rebuild from the
body's JSON than to unpickle), and the loop only loads the JSON and rebuilds the messages, in
two steps with a pause between: 2 ms in all for the 1 MB body, in place of 8-12 ms. A
Responses body it accepts is read again on the loop. A team alone, and bodies under `min_bytes`
(nearly all requests), never go to the worker. The worker costs ~67 MB of memory (its own
interpreter with pydantic and numpy), which is why it starts only when the first large body
arrives while another team is asking (CASCADE_OFFLOAD_BYTES, default 64 KiB; 0: no worker).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

from router.api.surfaces import Packed
from router.errors import APIError
from router.policy.model import LimitsSpec

Refusal = tuple[int, str, str, str | None, str | None]  # status, message, type, param, code


def _nice() -> None:
    os.nice(10)  # behind the serving loop on any CPU they share


def _warm() -> None:
    from router.api import surfaces, validation  # noqa: F401 - imported ahead of use


def check(data: bytes, endpoint: str, limits: dict[str, Any]) -> Refusal | Packed | None:
    """In the worker: the body parsed and validated as `endpoint` reads it; its refusal, or
    the request packed to be handed back (None: accepted, not packable)."""
    from router.api import validation
    from router.api.surfaces import CHAT, COMPLETIONS, RESPONSES, pack

    spec = LimitsSpec.model_validate(limits)
    surface = {found.endpoint: found for found in (CHAT, COMPLETIONS, RESPONSES)}[endpoint]
    try:
        exchange = surface.read(validation.json_body(data, spec.max_json_depth), spec)
    except APIError as exc:
        return exc.status, exc.message, exc.type, exc.param, exc.code
    return pack(exchange)


@dataclass(frozen=True, slots=True)
class Checked:
    """A body the worker did not refuse: accepted (with the request it read, when it could
    hand it back), or one it could not check - `starting` (not ready yet) or `worker_lost` (it
    died) - to be checked on the loop."""

    outcome: Literal["accepted", "starting", "worker_lost"]
    packed: Packed | None = None


class Offload:
    """One niced worker process that checks large bodies (see the module's docstring). The
    server starts it with itself when it tells teams apart (keys are configured); else it
    starts the first time a large body arrives while another team is asking, which a gateway
    whose callers are all one team never sees: it pays no memory for it."""

    def __init__(self, min_bytes: int) -> None:
        self.min_bytes = min_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future[None] | None = None

    def start(self) -> Future[None]:
        """Start the worker, if it is not; done when it can take a body."""
        if self._warm is not None:
            return self._warm
        self._pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_nice
        )
        # a new interpreter takes ~1 s to start and import what `check` needs: bodies that
        # arrive meanwhile are checked on the loop, as without a worker
        self._warm = self._pool.submit(_warm)
        return self._warm

    async def started(self) -> None:
        """Start the worker, if it is not, and wait until it can take a body."""
        await asyncio.wrap_future(self.start())

    async def check(self, data: bytes, endpoint: str, limits: LimitsSpec) -> Checked:
        """Raise what the worker refused the body with, if it did; else whether it accepted
        it, or could not tell: it is starting (started by this body), or it died (e.g. killed
        for memory: a new one is started). Bodies it cannot tell of are checked on the loop."""
        if self._pool is None or self._warm is None:
            self.start()
            return Checked("starting")
        if not self._warm.done():
            return Checked("starting")
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                self._pool, check, data, endpoint, limits.model_dump()
            )
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._warm = None
            self.start()
            return Checked("worker_lost")
        if isinstance(found, tuple):
            status, message, type_, param, code = found
            raise APIError(status, message, type_=type_, param=param, code=code)
        return Checked("accepted", found)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
