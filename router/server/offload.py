"""Large bodies are checked first in a worker process while another team is asking, so
that a body the gateway refuses costs its event loop only the copy to the worker.

Parsing and validating a body is synchronous: 7 ms for 5,000 tools, 12 ms for a 1 MB body of
2,048 messages. On the serving loop, every other request that becomes ready meanwhile waits
for it, whatever team it belongs to. A worker process, niced, is preempted by the kernel the
moment the serving loop has work (another team's bytes arriving), which the loop cannot do to
itself. So a body of at least `min_bytes` that arrives while another team has asked lately
(router/server/fairness.py) is parsed and validated there first: what the worker refuses is
refused with the same OpenAI error, and only a body it accepts is parsed again on the loop
(handing back the parsed request would cost about as much as parsing it: 7.4 ms to unpickle
the 2,048 messages against 11 ms to parse them). A team alone, and bodies under `min_bytes`
(nearly all requests), never go to the worker. The worker costs ~67 MB of memory (its own
interpreter with pydantic and numpy), which is why there is none unless CASCADE_OFFLOAD_BYTES
asks for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from router.errors import APIError
from router.policy.model import LimitsSpec

Refusal = tuple[int, str, str, str | None, str | None]  # status, message, type, param, code


def _nice() -> None:
    os.nice(10)  # behind the serving loop on any CPU they share


def _warm() -> None:
    from router.api import surfaces, validation  # noqa: F401 - imported ahead of use


def check(data: bytes, endpoint: str, limits: dict[str, Any]) -> Refusal | None:
    """In the worker: the body parsed and validated as `endpoint` reads it; its refusal."""
    from router.api import validation
    from router.api.surfaces import CHAT, COMPLETIONS, RESPONSES

    spec = LimitsSpec.model_validate(limits)
    surface = {found.endpoint: found for found in (CHAT, COMPLETIONS, RESPONSES)}[endpoint]
    try:
        surface.read(validation.json_body(data, spec.max_json_depth), spec)
    except APIError as exc:
        return exc.status, exc.message, exc.type, exc.param, exc.code
    return None


class Offload:
    """One niced worker process that checks large bodies (see the module's docstring)."""

    def __init__(self, min_bytes: int) -> None:
        self.min_bytes = min_bytes
        self._pool = self._started()

    @staticmethod
    def _started() -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_nice
        )
        # started now, with the server, not by the first large body (a new interpreter
        # takes ~1 s to start and import what `check` needs)
        pool.submit(_warm)
        return pool

    async def check(self, data: bytes, endpoint: str, limits: LimitsSpec) -> bool:
        """Raise what the worker refused the body with, if it did; True when it accepted,
        False when it could not tell (it died, e.g. killed for memory: the body is then
        checked on the loop as without a worker, and a new worker is started)."""
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                self._pool, check, data, endpoint, limits.model_dump()
            )
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._started()
            return False
        if found is not None:
            status, message, type_, param, code = found
            raise APIError(status, message, type_=type_, param=param, code=code)
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
