"""The cascade executor: carry out a Decision, try its steps in order, keep the first
confident answer, and report what happened.

The executor returns an `Outcome` (every attempt, typed, and the answer to serve) or raises
`CascadeFailure` (every attempt, and why nothing could answer). It never sees the decision
record or HTTP: the handler builds the record from the Decision and the Outcome, and maps a
failure to a status.

Streaming contract (docs/streaming.md): an answer that may still be rejected is never
streamed. A step with an acceptance rule is generated in full, scored, and only then
streamed to the client if accepted; a step whose answer is always kept streams live. So a
client never receives a token that is later retracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from router.backends.base import (
    DEFAULT_FALLBACK_ON,
    EMBEDDINGS_REQUEST,
    Backend,
    BackendError,
    Completion,
    FailureClass,
    StreamEvent,
    Usage,
    failure_class,
    upstream_id,
)
from router.backends.registry import TYPES, local_tiers
from router.confidence import AcceptanceModel, Answered, Confidence, judge, score
from router.outcomes import (
    Abandoned,
    CascadeFailure,
    Crashed,
    LiveStream,
    Outcome,
)
from router.policy.model import Policy
from router.records import Attempt, AttemptOutcome, ended
from router.repair import Continuation, Sent, repair_stream
from router.request import ClientRequest
from router.routing import Decision, Step, walk
from router.usage import Meter, UsageModel, overflow


@dataclass(slots=True)
class _Tally:
    """What the tiers tried so far did: their attempts, and the failures among them."""

    attempts: list[Attempt] = field(default_factory=list)
    errors: list[BackendError] = field(default_factory=list)


@dataclass(slots=True)
class _Run(_Tally):
    """One completion request's way through the cascade."""

    best: tuple[float, int, Completion] | None = None  # (confidence, attempt index, answer)
    # the failure classes on which the run goes on to the next tier (the route's fallback_on)
    fallback_on: frozenset[FailureClass] = frozenset(DEFAULT_FALLBACK_ON)
    rejected: list[tuple[str, Completion]] = field(default_factory=list)

    def outcome(
        self,
        tier: str,
        model: str,
        *,
        degraded: bool = False,
        completion: Completion | None = None,
        live: LiveStream | None = None,
    ) -> Outcome:
        """The answer served, with what the run did to get it."""
        return Outcome(self.attempts, tier, model, degraded, completion, live, tuple(self.rejected))


@contextlib.contextmanager
def _reporting(tally: _Tally) -> Iterator[None]:
    """However the cascade ends, its attempts go with it: a client that left is `Abandoned`
    (still a cancellation), a bug is `Crashed`; a CascadeFailure already carries them."""
    try:
        yield
    except asyncio.CancelledError as exc:
        if isinstance(exc, Abandoned):
            raise
        raise Abandoned(tally.attempts) from exc
    except (CascadeFailure, Crashed):
        raise
    except Exception as exc:
        raise Crashed(tally.attempts) from exc


@dataclass(frozen=True, slots=True)
class _Tier:
    type: str
    local: bool
    features: frozenset[str]  # request features it serves
    finish_when_left: bool = False  # a whole answer its client left is finished anyway
    continuation: Continuation = "regenerate"  # how it continues a broken stream
    window: int | None = None  # its context window, when declared


def _output_check(request: ClientRequest, completion: Completion) -> str | None:
    """For a structured-output request, "valid" or why the answer is not what was asked
    (router/output_format.py); None otherwise, and for an answer that called tools."""
    output = request.params.output
    if output is None or completion.finish_reason in ("tool_calls", "function_call"):
        return None
    problem = output.check(completion.text)
    return "valid" if problem is None else f"invalid: {problem}"


class Cascade:
    """Runs decisions against the backends (and acceptance models) of one policy."""

    def __init__(
        self,
        policy: Policy,
        backends: Mapping[str, Backend | None],
        acceptance_models: Mapping[str, AcceptanceModel] | None = None,
        in_flight: Counter[str] | None = None,
        usage: UsageModel | None = None,
    ) -> None:
        self._backends = backends
        # what each tier's reported usage taught, for the attempts it does not cover
        self.usage = UsageModel() if usage is None else usage
        # calls in progress per tier (shared across policy versions: /metrics reads it)
        self.in_flight: Counter[str] = Counter() if in_flight is None else in_flight
        self._acceptance = acceptance_models or {}
        local = local_tiers(policy)
        self._tiers = {
            name: _Tier(
                spec.type,
                name in local,
                spec.serves(TYPES[spec.type].features),
                spec.finishes_when_left,
                spec.continuation,
                spec.context_window,
            )
            for name, spec in policy.tiers.items()
        }

    def _attempt(
        self, tier: str, model: str, started: float, outcome: AttemptOutcome, **values: object
    ) -> Attempt:
        kind = self._tiers[tier]
        backend = self._backends.get(tier)
        if backend is not None and backend.state != "ready":  # its breaker, after this call
            values["breaker"] = backend.state
        return ended(tier, kind.type, model, started, local=kind.local, outcome=outcome, **values)

    async def run(self, decision: Decision, request: ClientRequest) -> Outcome:
        """Find the answer to serve.

        Each step is tried on its tier, then (if that fails) on the tier's fallbacks in
        order; the first that answers stands for the step and is judged by its acceptance.
        With `request.stream`, a step whose answer is always kept is opened as a live stream
        (its first event already received, so a failure can still fall back). When every
        answer was rejected, the most confident one is served, marked degraded."""
        run = _Run()
        with _reporting(run):
            return await self._run(decision, run, request)

    async def _run(self, decision: Decision, run: _Run, request: ClientRequest) -> Outcome:
        plan = decision.plan
        run.fallback_on = plan.fallback_on
        calls = walk(decision, live_first=request.stream and plan.stream == "live")
        call = next(calls, None)
        while call is not None:
            result = await self._try(
                call.tier, call.step, run, request, last=call.last, spares=call.spares
            )
            if isinstance(result, Outcome):
                return result
            try:
                call = calls.send(result)
            except StopIteration:
                call = None
        if run.best is None:
            raise CascadeFailure(run.attempts, run.errors, passthrough=plan.passthrough)
        _, index, completion = run.best
        run.attempts[index] = replace(run.attempts[index], outcome="degraded")
        tier = run.attempts[index].tier
        return run.outcome(tier, completion.model, degraded=True, completion=completion)

    async def embed(
        self, decision: Decision, body: Mapping[str, Any]
    ) -> tuple[list[Attempt], str, dict[str, Any]]:
        """Embeddings: the route's tiers in order (fallbacks included), the first that
        serves embeddings and answers; (attempts, the tier that answered, its answer). A
        tier without embeddings is skipped and recorded; no answer raises CascadeFailure."""
        tally = _Tally()
        with _reporting(tally):
            return await self._embed(decision, body, tally)

    async def _embed(
        self, decision: Decision, body: Mapping[str, Any], tally: _Tally
    ) -> tuple[list[Attempt], str, dict[str, Any]]:
        plan = decision.plan
        for item in decision.schedule():
            for tier in plan.candidates(item.step.tier):
                started = time.perf_counter()
                backend = self._ready(tier, EMBEDDINGS_REQUEST, tally, started)
                if backend is None:
                    continue
                self.in_flight[tier] += 1
                try:
                    answer = await backend.embed(body)
                except BackendError as exc:
                    self._failed(tier, backend, started, exc, tally)
                    continue
                except asyncio.CancelledError:
                    tally.attempts.append(
                        self._attempt(tier, backend.model, started, "client_gone")
                    )
                    raise
                finally:
                    self.in_flight[tier] -= 1
                usage = Usage.of(answer.get("usage"))
                tally.attempts.append(
                    self._attempt(
                        tier,
                        str(answer.get("model") or backend.model),
                        started,
                        "accepted",
                        prompt_tokens=usage.prompt_tokens,
                        usage_source=usage.source,
                        upstream_id=upstream_id(answer),
                    )
                )
                return tally.attempts, tier, answer
        raise CascadeFailure(tally.attempts, tally.errors, passthrough=plan.passthrough)

    def _ready(
        self,
        tier: str,
        needs: frozenset[str],
        tally: _Tally,
        started: float,
        request: ClientRequest | None = None,
    ) -> Backend | None:
        """The tier's backend when it can take the request; else None, with why recorded: not
        configured (an error), or lacking a feature the request uses (skipped)."""
        backend = self._backends.get(tier)
        if backend is None:
            error = BackendError("unavailable", f"tier '{tier}' is not configured")
            error.unconfigured = True
            tally.errors.append(error)
            tally.attempts.append(self._attempt(tier, "", started, "error", error=error.message))
            return None
        missing = needs - self._tiers[tier].features
        too_long = overflow(request, self._tiers[tier].window) if request else None
        if missing or too_long:  # e.g. tools for a local model: the record says why
            skipped = ", ".join(sorted(missing)) or str(too_long)
            tally.errors.append(
                BackendError("unsupported", f"tier '{tier}' does not serve {skipped}")
                if missing
                else BackendError("rejected", f"tier '{tier}' cannot fit the request: {skipped}")
            )
            tally.attempts.append(
                self._attempt(tier, backend.model, started, "skipped", error=f"skipped: {skipped}")
            )
            return None
        return backend

    def _failed(
        self, tier: str, backend: Backend, started: float, exc: BackendError, tally: _Tally
    ) -> None:
        outcome: AttemptOutcome = exc.kind if exc.kind in ("timeout", "shed") else "error"
        # kept without its traceback: that holds the frame that holds the tally, a reference
        # cycle that kept each failed request's objects until a garbage collection
        tally.errors.append(exc.with_traceback(None))
        tally.attempts.append(
            self._attempt(
                tier, backend.model, started, outcome, error=exc.message, retries=exc.retries
            )
        )

    async def _try(
        self,
        tier: str,
        step: Step,
        run: _Run,
        request: ClientRequest,
        *,
        last: bool,
        spares: tuple[str, ...] = (),
    ) -> Outcome | Literal["rejected", "failed"]:
        """One tier's try at a step: the Outcome when its answer is served; else whether it
        answered and was rejected (an escalated attempt) or failed (an error attempt)."""
        started = time.perf_counter()
        backend = self._ready(tier, request.features, run, started, request)
        if backend is None:
            return "failed"
        keep_always = last or step.acceptance is None
        self.in_flight[tier] += 1
        live: LiveStream | None = None
        try:
            if request.stream and keep_always:
                live = await self._open_live(tier, backend, request, started, spares)
                return run.outcome(tier, backend.model, live=live)
            if self._tiers[tier].finish_when_left:
                completion = await self._finished(tier, backend, request, started, run)
            else:
                completion = await backend.complete(request.prompt, request.params)
        except asyncio.CancelledError:
            if (
                not run.attempts
                or run.attempts[-1].tier != tier
                or run.attempts[-1].outcome != "client_gone"
            ):
                run.attempts.append(self._left(tier, backend.model, started, request))
            raise
        except BackendError as exc:
            self._failed(tier, backend, started, exc, run)
            if failure_class(exc) not in run.fallback_on:  # the client's answer, as it is
                raise CascadeFailure(run.attempts, [exc], passthrough=True) from None
            return "failed"
        finally:
            if live is None:  # a live stream is released when it ends
                self.in_flight[tier] -= 1
        completion = self._metered(tier, request, completion, started)
        confidence = self._judge(step, completion, keep_always, request.prompt.question)
        check = _output_check(request, completion)
        valid = check is None or check == "valid"
        keep = keep_always or (valid and confidence is not None and confidence.accepted)
        run.attempts.append(
            self._attempt(
                tier,
                completion.model,
                started,
                "accepted" if keep else "escalated",
                ttft_ms=completion.ttft_ms,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cached_tokens=completion.cached_tokens,
                reasoning_tokens=completion.reasoning_tokens,
                confidence=None if confidence is None else confidence.as_record(),
                retries=completion.retries,
                output_check=check,
                usage_source=completion.usage_source,
                upstream_id=completion.upstream_id,
                queued_ms=round(completion.queued_ms, 3),
            )
        )
        if keep:
            return run.outcome(tier, completion.model, completion=completion)
        run.rejected.append((tier, completion))
        value = confidence.value if confidence is not None and valid else -1.0
        if run.best is None or value > run.best[0]:
            run.best = (value, len(run.attempts) - 1, completion)
        return "rejected"

    async def _finished(
        self, tier: str, backend: Backend, request: ClientRequest, started: float, run: _Run
    ) -> Completion:
        """A whole answer that finishes even if its client leaves (`on_client_gone: finish`):
        then its attempt is `client_gone` at the provider's own usage."""
        call = asyncio.ensure_future(backend.complete(request.prompt, request.params))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            try:
                completion = await call
            except (BackendError, asyncio.CancelledError):
                raise asyncio.CancelledError from None  # (estimated by the caller)
            completion = self._metered(tier, request, completion, started)
            run.attempts.append(
                self._attempt(
                    tier,
                    completion.model,
                    started,
                    "client_gone",
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    cached_tokens=completion.cached_tokens,
                    reasoning_tokens=completion.reasoning_tokens,
                    usage_source=completion.usage_source,
                    upstream_id=completion.upstream_id,
                )
            )
            raise

    def _left(self, tier: str, model: str, started: float, request: ClientRequest) -> Attempt:
        """A whole answer the client left before it came: what the tier billed until it
        stopped, estimated (router/usage.py)."""
        known = self.usage.of(tier)
        seconds = time.perf_counter() - started
        return self._attempt(
            tier,
            model,
            started,
            "client_gone",
            prompt_tokens=known.prompt(request),
            completion_tokens=known.elapsed(request, seconds),
            usage_source="estimated",
        )

    def _metered(
        self, tier: str, request: ClientRequest, completion: Completion, started: float
    ) -> Completion:
        """A whole answer's usage learned from when the tier reported it, estimated when it
        did not (the text at 4 bytes a token, the prompt as router/usage.py has it)."""
        known = self.usage.of(tier)
        if completion.usage_source == "estimated":
            text_tokens = math.ceil(len(completion.text.encode()) / 4)
            return replace(
                completion,
                prompt_tokens=completion.prompt_tokens or known.prompt(request),
                completion_tokens=max(completion.completion_tokens, text_tokens),
            )
        ttft = None if completion.ttft_ms is None else completion.ttft_ms / 1000
        known.observe(
            request,
            completion.prompt_tokens,
            completion.completion_tokens,
            first_token_s=ttft,
            seconds=time.perf_counter() - started,
        )
        return completion

    def _judge(
        self, step: Step, completion: Completion, keep_always: bool, question: str
    ) -> Confidence | None:
        """The step's acceptance; an answer kept anyway is still scored (mean_prob, threshold
        0) when it has logprobs, so records show every answer's confidence."""
        if step.acceptance is not None and not keep_always:
            answered = Answered(
                question, completion.text, completion.token_logprobs or (), completion.finish_reason
            )
            return judge(step.acceptance, answered, self._acceptance)
        if completion.token_logprobs is not None:
            return score("mean_prob", completion.token_logprobs, 0.0)
        return None

    async def _open_live(
        self,
        tier: str,
        backend: Backend,
        request: ClientRequest,
        started: float,
        spares: tuple[str, ...] = (),
    ) -> LiveStream:
        stream = backend.stream(request.prompt, request.params)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise BackendError("error", f"tier '{tier}' sent an empty stream") from None
        except BaseException:
            await stream.aclose()
            raise
        ttft_ms = (time.perf_counter() - started) * 1000
        meter = Meter(request, self.usage.of(tier))
        meter.add(first)
        abandoned = self._attempt(
            tier, backend.model, started, "client_gone", ttft_ms=ttft_ms, **meter.estimate()
        )

        def release() -> None:
            self.in_flight[tier] -= 1

        live = LiveStream(tier, stream, abandoned, release)
        live.events = self._follow(
            live,
            backend,
            stream,
            first=first,
            started=started,
            ttft_ms=ttft_ms,
            meter=meter,
            spares=spares,
        )
        return live

    async def _follow(
        self,
        live: LiveStream,
        backend: Backend,
        stream: AsyncGenerator[StreamEvent, None],
        *,
        first: StreamEvent,
        started: float,
        ttft_ms: float,
        meter: Meter,
        spares: tuple[str, ...] = (),
    ) -> AsyncGenerator[StreamEvent, None]:
        """Pass a live stream through; its attempt is set when it ends, breaks or is left,
        with the tokens the tier will bill: its usage, or what the meter counted. A stream
        that breaks after part of its answer went out is continued by a spare tier when one
        can (router/repair.py)."""
        final: StreamEvent | None = first if first.finish_reason else None
        error: BackendError | None = None
        sent = Sent(chat=meter.request.prompt.is_chat)
        try:
            async with contextlib.aclosing(stream):
                try:
                    sent.add(first)
                    yield first
                    async for event in stream:
                        meter.add(event)
                        if event.finish_reason:
                            final = event
                        sent.add(event)
                        yield event
                except GeneratorExit:  # closed early: the client left
                    if final is None:
                        meter.left = True
                        if meter.finished:  # only the usage was still to come
                            final = await meter.drain(stream)
                    raise
        except BackendError as exc:
            error = exc
            if not spares or not sent.text:
                raise
            spare = functools.partial(self._spare, request=meter.request)
            found = repair_stream(
                live,
                meter.request,
                sent,
                spares=spares,
                spare=spare,
                attempt=self._attempt,
                meter_for=lambda tier: Meter(meter.request, self.usage.of(tier)),
            )
            async for event in found:
                yield event
            if not live.repairs or live.repairs[-1].outcome != "accepted":
                raise
        finally:
            live.released()
            live.attempt = self._streamed(
                live.tier,
                backend,
                started,
                first=(ttft_ms, first.retries, first.queued_ms),
                final=final,
                error=error,
                meter=meter,
            )
            error = None  # not held by this frame, which the error's traceback holds

    def _spare(self, tier: str, request: ClientRequest) -> tuple[Backend, Continuation] | None:
        """A tier that may continue a broken stream: configured, its breaker not open, and
        serving what the request uses."""
        backend, kind = self._backends.get(tier), self._tiers.get(tier)
        if backend is None or kind is None or backend.state == "open":
            return None
        if request.features - kind.features:
            return None
        return backend, kind.continuation

    def _streamed(
        self,
        tier: str,
        backend: Backend,
        started: float,
        *,
        first: tuple[float, int, float],
        final: StreamEvent | None,
        error: BackendError | None,
        meter: Meter,
    ) -> Attempt:
        """A live stream's attempt: answered (its final event's usage, learned from), broken
        off (error, timeout) or left (client_gone), the latter two at what was metered."""
        ttft_ms, retries, queued_ms = first
        values: dict[str, Any] = {"ttft_ms": ttft_ms, "retries": retries}
        values["queued_ms"] = round(queued_ms, 3)
        ended = final if error is None else None  # a final event, then a break: metered
        values.update(meter.billed(ended))
        if ended is not None and ended.usage_source != "estimated":
            meter.learn(ended, time.perf_counter() - started, ttft_ms / 1000)
        model = (ended.model if ended else None) or backend.model
        outcome: AttemptOutcome = "client_gone"
        if error is not None:
            outcome = "timeout" if error.kind == "timeout" else "error"
            values["error"] = error.message
        elif final is not None and not meter.left:
            outcome = "accepted"
        return self._attempt(tier, model, started, outcome, **values)
