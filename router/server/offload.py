"""Large or dense bodies are checked first in a worker process while another team is asking,
so that a body the gateway refuses costs its event loop only the copy to the worker.

Parsing and validating a body is synchronous: 7 ms for 5,000 tools, 12 ms for a 1 MB body of
2,048 messages, 0.9 ms for 43 KB holding 4,000 objects. On the serving loop, every other
request that becomes ready meanwhile waits for it, whatever team it belongs to. A worker
process under SCHED_IDLE is preempted by the kernel the moment the serving loop has work
(another team's bytes arriving), which the loop cannot do to itself. So a body of at least
`min_bytes`, or with at least `min_objects` JSON objects and arrays, that arrives while
another team has asked lately (router/server/fairness.py) is parsed and validated there
first: what the worker refuses is refused with the same OpenAI error. A chat or completions
body it accepts comes back read (router/api/surfaces.py `Packed`: the request without what is
cheaper to rebuild from the body's JSON than to unpickle), and the loop only loads the JSON and
rebuilds the messages, in two steps with a pause between: 2 ms in all for the 1 MB body, in
place of 8-12 ms. A Responses body it accepts is read again on the loop. A team alone, and
small sparse bodies (nearly all requests), never go to the worker.

The worker is one process talking over a Unix socket that the serving loop reads and writes
itself (frames: a 4-byte length, then a pickle; answers in the order asked). No thread of the
serving process touches the bodies: with a process pool, its feeder and manager threads
pickled and unpickled them while holding the GIL, and under a hostile tenant the loop spent
~30% of its busy time waiting for the GIL back after its own socket writes. The worker costs
~50 MB (its own interpreter with pydantic and numpy): a server that tells teams apart starts
it with itself; one whose callers are all one team never needs it (app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from router import heap
from router.api import validation
from router.api.surfaces import CHAT, COMPLETIONS, RESPONSES, Packed, pack
from router.errors import APIError
from router.policy.model import LimitsSpec

_LENGTH = struct.Struct("!I")
_READY = b"ready"
_SURFACES = {surface.endpoint: surface for surface in (CHAT, COMPLETIONS, RESPONSES)}


def check(
    data: bytes, endpoint: str, limits: dict[str, Any], estimated: bool
) -> APIError | Packed | None:
    """In the worker: the body parsed and validated as `endpoint` reads it; its refusal, or
    the request packed to be handed back (None: accepted, not packable). `estimated`: no tier
    of the server counts tokens, so a prompt over `max_prompt_tokens` by its estimate is
    refused here too - after the key's model check, on the loop (`Packed.too_long`)."""
    spec = LimitsSpec.model_validate(limits)
    try:
        exchange = _SURFACES[endpoint].read(validation.json_body(data, spec.max_json_depth), spec)
    except APIError as exc:
        return exc
    packed = pack(exchange)
    if packed is None or not estimated:
        return packed
    client = exchange.client
    too_long = validation.estimated_too_long(client.prompt, client.billable, spec.max_prompt_tokens)
    return packed if too_long is None else replace(packed, turns=(), too_long=too_long)


def _send(write: Callable[[bytes], object], payload: bytes) -> None:
    """One frame: its length, then the payload (written as it is, not copied into one)."""
    write(_LENGTH.pack(len(payload)))
    write(payload)


def behind_the_loop() -> None:
    """Run only when nothing else on this CPU wants to: SCHED_IDLE, which the kernel switches
    away from the moment the serving loop wakes (a process merely niced may keep the CPU for
    the rest of its slice, milliseconds). Where there is no SCHED_IDLE, niced as far as it
    goes. On a machine whose every CPU is busy, what the worker checks waits (it gets ~0.3%
    of a CPU): large bodies of a team while another team asks are what yields first."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


def serve_worker(fd: int) -> None:
    """The worker's loop (`python -c ...serve_worker(FD)`): behind the serving loop on any
    CPU they share, it answers each body on the socket `fd` in turn until the server closes
    it."""
    behind_the_loop()
    # its imports kept out of the collector's way: a full collection over them took ~18 ms,
    # after nearly every large body
    heap.settle(thaw=False)
    with socket.socket(fileno=fd) as sock, sock.makefile("rwb") as stream:
        _send(stream.write, _READY)  # imported what `check` needs
        stream.flush()
        while head := stream.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(head)
            # from the serving process over a private socket pair: the client's body is in it
            # as bytes, never unpickled
            asked = pickle.loads(stream.read(length))  # noqa: S301
            _send(stream.write, pickle.dumps(check(*asked), protocol=5))
            stream.flush()


class WorkerLost(Exception):
    """The worker died (killed for memory, say) or never came up."""


@dataclass
class _Worker:
    """One worker process and the serving loop's end of its socket."""

    process: subprocess.Popen[bytes]
    ready: asyncio.Future[None]
    on_lost: Callable[[int | None], None]  # told the exit status when it died serving
    asked: deque[asyncio.Future[object]] = field(default_factory=deque)
    writer: asyncio.StreamWriter | None = None
    lost: bool = False
    reading: asyncio.Task[None] | None = None

    @classmethod
    def spawn(cls, on_lost: Callable[[int | None], None]) -> _Worker:
        ours, theirs = socket.socketpair()
        entry = f"from router.server.offload import serve_worker; serve_worker({theirs.fileno()})"
        with theirs:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "-c", entry], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
        worker = cls(process, asyncio.get_running_loop().create_future(), on_lost)
        worker.reading = asyncio.create_task(worker._read(ours), name="offload-worker")
        return worker

    async def _read(self, sock: socket.socket) -> None:
        """Hand each answer to the body it answers, in order; on EOF the worker is lost."""
        try:
            reader, self.writer = await asyncio.open_unix_connection(sock=sock)
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                payload = await reader.readexactly(length)
                if not self.ready.done():
                    self.ready.set_result(None)
                    continue
                waiting = self.asked.popleft()
                if not waiting.done():  # its request may have gone meanwhile
                    waiting.set_result(pickle.loads(payload))  # noqa: S301 - our worker's
        except (OSError, EOFError, IndexError, pickle.UnpicklingError, asyncio.IncompleteReadError):
            self._lose()  # dead, or (never seen) answering what it was not asked
            # reaped off the loop: killed, it is dead or dying
            status = await asyncio.get_running_loop().run_in_executor(None, self.process.wait)
            self.on_lost(status)

    def _lose(self) -> None:
        if self.lost:
            return
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(WorkerLost())
            self.ready.exception()  # retrieved: nobody need be waiting on it
        while self.asked:
            waiting = self.asked.popleft()
            if not waiting.done():
                waiting.set_exception(WorkerLost())
        if self.writer is not None:
            self.writer.close()
        with contextlib.suppress(OSError):
            self.process.kill()

    async def ask(self, *asked: object) -> object:
        """`check`'s answer for its arguments, `asked`."""
        if self.lost or self.writer is None:
            raise WorkerLost()
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.asked.append(answer)
        _send(self.writer.write, pickle.dumps(asked, protocol=5))
        return await answer

    def close(self) -> None:
        if self.reading is not None:
            self.reading.cancel()
        self._lose()
        self.process.wait(timeout=5)  # killed: at once


@dataclass(frozen=True, slots=True)
class Checked:
    """A body the worker did not refuse: accepted (with the request it read, when it could
    hand it back), or one it could not check - `starting` (not ready yet) or `worker_lost` (it
    died) - to be checked on the loop."""

    outcome: Literal["accepted", "starting", "worker_lost"]
    packed: Packed | None = None


class Offload:
    """One worker process (`behind_the_loop`) that checks large or dense bodies (see the
    module's docstring), started by `start()` or by the first body it is asked to check. One
    that dies is replaced by the next body, at most once every `restart_s` (a worker that
    cannot start, or is killed for memory again and again, costs a process start per
    `restart_s`, not per body); until then bodies are checked on the loop."""

    def __init__(
        self,
        min_bytes: int,
        *,
        min_objects: int = 0,
        restart_s: float = 10.0,
        on_lost: Callable[[int | None], None] = lambda status: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_bytes = min_bytes
        self.min_objects = min_objects
        self._restart_s = restart_s
        self._on_lost = on_lost
        self._clock = clock
        self._worker: _Worker | None = None
        self._started_at = float("-inf")

    def worth(self, data: bytes) -> bool:
        """Whether a body goes to the worker (while another team asks): `min_bytes` or more,
        or `min_objects` or more JSON objects and arrays (0: bytes alone). Parsing costs by
        the object, not the byte: 43 KB holding 4,000 objects took the loop 0.9 ms to parse,
        and each young collection of the garbage collector then walks them. Brackets inside
        strings count too: a body is sent early, never kept back."""
        if len(data) >= self.min_bytes:
            return True
        objects = self.min_objects
        return 0 < objects <= len(data) // 2 and data.count(b"{") + data.count(b"[") >= objects

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    def start(self) -> None:
        """Start the worker, unless it runs (a new interpreter takes ~1 s to start and import
        what `check` needs: bodies that arrive meanwhile are checked on the loop)."""
        if self._worker is None or self._worker.lost:
            self._worker = _Worker.spawn(self._on_lost)
            self._started_at = self._clock()

    async def started(self) -> None:
        """Start the worker, if it is not, and wait until it can take a body."""
        self.start()
        assert self._worker is not None
        await self._worker.ready

    async def check(
        self, data: bytes, endpoint: str, limits: LimitsSpec, *, estimated: bool = False
    ) -> Checked:
        """Raise what the worker refused the body with, if it did; else whether it accepted
        it, or could not tell: it is starting, or it died (e.g. killed for memory: a new one
        is started). Bodies it cannot tell of are checked on the loop."""
        worker = self._worker
        if worker is None:
            self.start()
            return Checked("starting")
        if worker.lost:
            self._restart()
            return Checked("worker_lost")
        if not worker.ready.done():
            return Checked("starting")
        try:
            found = await worker.ask(data, endpoint, limits.model_dump(), estimated)
        except WorkerLost:
            self._restart()
            return Checked("worker_lost")
        if isinstance(found, APIError):
            raise found.fresh()  # `found` is not raised: no cycle through this frame
        assert found is None or isinstance(found, Packed)
        return Checked("accepted", found)

    def _restart(self) -> None:
        if self._clock() - self._started_at >= self._restart_s:
            self.start()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
