"""What the cascade executor hands back: the `Outcome` of a request (its attempts and the
answer served, whole or as a `LiveStream`), or why it has none (`CascadeFailure`, or a
client that left: `Abandoned`, or a bug: `Crashed`). The values router/cascade.py makes and
the server, the cache and the shadow checks read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal

from router.backends.base import BackendError, Completion, StreamEvent, failure_class, is_refusal
from router.records import Attempt


class LiveStream:
    """An answer streamed as it is generated; its attempt is known only when it ends.

    `events` passes the tier's stream on and sets `attempt` when it ends, breaks or is left;
    `aclose` (always called by whoever serves it) also covers a stream never iterated."""

    def __init__(
        self,
        tier: str,
        source: AsyncGenerator[StreamEvent, None],
        abandoned: Attempt,
        release: Callable[[], None] = lambda: None,
    ) -> None:
        self.tier = tier
        self.source = source
        self.events: AsyncGenerator[StreamEvent, None] = source
        self.attempt: Attempt | None = None
        self.repairs: list[Attempt] = []  # tiers that continued it after it broke
        self._abandoned = abandoned
        self._release: Callable[[], None] | None = release  # the tier's in-flight count

    def released(self) -> None:
        """The stream is over (once, however it ended)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    async def aclose(self) -> None:
        await self.events.aclose()
        if self.attempt is None:  # never iterated: the tier's stream is still open
            await self.source.aclose()
            self.attempt = self._abandoned
        self.released()


@dataclass(slots=True)
class Outcome:
    """What the cascade did: the attempts in the order they ran, and the answer served."""

    attempts: list[Attempt]
    tier: str
    model: str
    degraded: bool
    completion: Completion | None = None  # a whole answer (streamed from it if asked)
    live: LiveStream | None = None  # an answer streamed live (its attempt comes at the end)
    # answers a step's acceptance rejected, by tier, in the order they came (shadow checks)
    rejected: tuple[tuple[str, Completion], ...] = ()

    @property
    def escalations(self) -> int:
        """Answers a step's acceptance (or output check) rejected, moving the request on: a
        tier skipped or failed is not one (those are `fallbacks`)."""
        return sum(1 for a in self.attempts if a.outcome in ("escalated", "degraded"))

    @property
    def fallbacks(self) -> int:
        """Tiers asked that failed (an error, a timeout, a full queue, not configured) and
        were passed over."""
        return sum(1 for a in self.attempts if a.outcome in ("error", "timeout", "shed"))

    def all_attempts(self) -> list[Attempt]:
        if self.live is None:
            return list(self.attempts)
        live = [self.live.attempt] if self.live.attempt is not None else []
        return [*self.attempts, *live, *self.live.repairs]

    @property
    def served_by(self) -> tuple[str, str]:
        """The tier and model that finished the answer (a repair's, when one continued it)."""
        repairs = self.live.repairs if self.live is not None else []
        if repairs and repairs[-1].outcome == "accepted":
            return repairs[-1].tier, repairs[-1].model
        return self.tier, self.model


FailureReason = Literal[
    "saturated", "rejected", "unsupported", "timeout", "unavailable", "error", "refused"
]


class CascadeFailure(Exception):
    """No step answered. `reason` says why: every tier shed (`saturated`), every tier found
    the request too large (`rejected`), else the last failure; `upstream_status` is the last
    upstream's HTTP status, if it sent one."""

    def __init__(
        self, attempts: list[Attempt], errors: list[BackendError], *, passthrough: bool
    ) -> None:
        last = errors[-1]
        super().__init__(last.message)
        self.attempts = attempts
        self.message = last.message
        self.upstream_status = last.status
        self.retry_after = last.retry_after
        self.code = last.code  # the upstream error's own code
        self.passthrough = passthrough
        self.reason: FailureReason
        # A tier that is not configured never could answer: it does not decide the reason
        # while a configured one tried.
        tried = [error for error in errors if not error.unconfigured] or errors
        kinds = {error.kind for error in tried}
        if is_refusal(last):
            self.reason = "refused"  # the provider's content policy: the client's answer
        elif kinds == {"shed"}:
            self.reason = "saturated"  # every tier is busy: retry later
        elif kinds == {"rejected"}:
            self.reason = "rejected"  # too large for every tier that could take it
            self.message = tried[-1].message
        elif failure_class(last) == "context_length_exceeded":
            self.reason = "rejected"  # the last tier's provider found the prompt too long
        elif kinds == {"unsupported"}:
            self.reason = "unsupported"  # no tier serves a feature the request uses
            self.message = tried[-1].message
        elif last.kind in ("timeout", "unavailable"):
            self.reason = last.kind
        else:
            self.reason = "error"


class Abandoned(asyncio.CancelledError):
    """The client left while the cascade ran (the task was cancelled). Still a cancellation;
    it carries the attempts so far, the interrupted one marked `client_gone`, so the record
    says what was spent. No further tier is tried."""

    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("client gone")
        self.attempts = attempts


class Crashed(Exception):
    """A bug inside the cascade (not a tier's failure): it carries the attempts so far, so
    the record still holds every attempt made."""

    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("internal error in the cascade")
        self.attempts = attempts
