"""Stream repair: a live stream that breaks after part of its answer reached the client is
continued on another tier of the route, and the continuation spliced into the same stream,
so the client receives one coherent answer instead of an error event.

Two ways to continue, by the continuing tier's `continuation`:

- `prefill`: the tier is asked to continue the assistant message already sent (the text so
  far as the last, assistant, message; vLLM's `continue_final_message`, llama.cpp's server);
  what it generates is the rest of the answer. A tier that refuses the prefill (a 400, as
  some providers answer an assistant message last) is asked again by `regenerate`.
- `regenerate` (the default): the tier is asked for the whole answer deterministically
  (temperature 0), and the part already sent is skipped when the new answer begins with it,
  character for character. An answer that departs from it cannot be spliced: the repair
  gives up before anything more is sent.

The tiers that may continue a stream are the broken tier's fallbacks, then the tiers of the
route's later steps (so a local tier's stream that breaks continues on the next step).

Never repaired (the client gets the error event, as before): a stream that sent tool-call
deltas, several choices, or logprobs, a sampled request (a temperature above 0 and no seed)
continued by `regenerate`, and a stream no spare tier continues before its first event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from router.backends.base import (
    Backend,
    BackendError,
    GenerationParams,
    Message,
    Prompt,
    StreamEvent,
)
from router.outcomes import LiveStream
from router.records import Attempt, AttemptOutcome
from router.request import ClientRequest
from router.usage import Meter

Continuation = Literal["regenerate", "prefill", "none"]


class Unrepairable(Exception):
    """This stream cannot be continued here (said why)."""


@dataclass(slots=True)
class Sent:
    """What a live stream passed to the client before it broke."""

    text: str = ""
    chat: bool = True
    template: dict[str, Any] | None = None  # one upstream chunk it relayed (its id, model)
    unrepairable: str | None = None  # why it cannot be continued, once known

    def add(self, event: StreamEvent) -> None:
        self.text += event.text
        raw = event.raw
        if raw is None:
            return
        if self.template is None:
            self.template = {
                key: raw[key] for key in ("id", "object", "created", "model") if key in raw
            }
        for choice in raw.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            if choice.get("index", 0) != 0:
                self.unrepairable = "several choices"
            elif isinstance(delta, dict) and (
                delta.get("tool_calls") or delta.get("function_call")
            ):
                self.unrepairable = "tool-call deltas"
            elif choice.get("logprobs"):
                self.unrepairable = "logprobs"


def _chunk(sent: Sent, choice: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chunk shaped like the broken stream's own (its id and model), for the client."""
    base = dict(sent.template or {})
    base.setdefault("object", "chat.completion.chunk" if sent.chat else "text_completion")
    base.setdefault("created", int(time.time()))
    return {**base, "choices": [choice], **extra}


def _piece(sent: Sent, text: str) -> StreamEvent:
    if sent.template is None:  # the broken stream relayed text: so does its continuation
        return StreamEvent(text=text)
    choice = (
        {"index": 0, "delta": {"content": text}, "finish_reason": None}
        if sent.chat
        else {"index": 0, "text": text, "finish_reason": None}
    )
    return StreamEvent(text=text, raw=_chunk(sent, choice))


def _ending(sent: Sent, final: StreamEvent) -> list[StreamEvent]:
    """The finish (and usage) chunks a relayed stream's client expects, then the final
    event the cascade records."""
    if sent.template is None:
        return [final]
    reason = final.finish_reason or "stop"
    choice = (
        {"index": 0, "delta": {}, "finish_reason": reason}
        if sent.chat
        else {"index": 0, "text": "", "finish_reason": reason}
    )
    usage = {
        "prompt_tokens": final.prompt_tokens or 0,
        "completion_tokens": final.completion_tokens or 0,
        "total_tokens": (final.prompt_tokens or 0) + (final.completion_tokens or 0),
    }
    finish = StreamEvent(raw=_chunk(sent, choice))
    return [finish, StreamEvent(raw={**_chunk(sent, choice), "choices": [], "usage": usage}), final]


def _asked(
    request: ClientRequest, sent: Sent, method: Continuation
) -> tuple[Prompt, GenerationParams]:
    """The prompt and parameters that ask a tier to continue (or redo) the answer."""
    params = request.params
    if method == "prefill":
        if request.prompt.text is not None:
            prompt = Prompt(text=request.prompt.text + sent.text)
            extra: Mapping[str, Any] = (
                {**params.extra, "prompt": prompt.text} if params.extra else {}
            )
        else:
            prompt = Prompt(messages=(*request.prompt.messages, Message("assistant", sent.text)))
            extra = {}
            if params.extra:
                messages = [
                    *params.extra.get("messages", ()),
                    {"role": "assistant", "content": sent.text},
                ]
                extra = {
                    **params.extra,
                    "messages": messages,
                    "continue_final_message": True,
                    "add_generation_prompt": False,
                }
        return prompt, replace(params, extra=extra)
    sampled = params.temperature not in (None, 0) and params.seed is None
    if sampled:
        raise Unrepairable("a sampled answer cannot be regenerated to match")
    extra = {**params.extra, "temperature": 0} if params.extra else {}
    return request.prompt, replace(params, temperature=0.0, extra=extra)


def asked_of(
    request: ClientRequest, sent: Sent, method: Continuation
) -> tuple[Prompt, GenerationParams]:
    """What to ask a tier for the rest of the answer; Unrepairable (and nothing asked) when
    this stream cannot be continued this way."""
    if sent.unrepairable is not None:
        raise Unrepairable(sent.unrepairable)
    if method == "none":
        raise Unrepairable("the tier does not continue answers")
    if request.params.top_logprobs is not None:
        raise Unrepairable("logprobs")
    return _asked(request, sent, method)


async def continued(
    backend: Backend,
    asked: tuple[Prompt, GenerationParams],
    sent: Sent,
    method: Continuation,
    seen: Callable[[StreamEvent], None] = lambda _: None,
) -> AsyncGenerator[StreamEvent, None]:
    """The rest of the answer from `backend`, as events for the client, then the final
    event (its finish and usage). Unrepairable, or a BackendError, before the first event
    yielded: nothing was sent, another tier may try."""
    prompt, params = asked
    stream = backend.stream(prompt, params)
    skip = "" if method == "prefill" else sent.text  # regenerated: what the client has
    got = ""
    try:
        async for event in stream:
            seen(event)  # every event the tier sent is billed, skipped or not
            if event.finish_reason is not None:
                if len(got) < len(skip):
                    raise Unrepairable("the new answer is shorter than what was sent")
                for ending in _ending(sent, event):
                    yield ending
                return
            if not event.text:
                continue
            got += event.text
            if len(got) <= len(skip):
                if not skip.startswith(got):
                    raise Unrepairable("the new answer departs from what was sent")
                continue
            if skip and not got.startswith(skip):
                raise Unrepairable("the new answer departs from what was sent")
            new = got[len(skip) :]
            skip = ""
            got = ""
            yield _piece(sent, new)
    finally:
        await stream.aclose()


Spare = Callable[[str], tuple[Backend, Continuation] | None]
MakeAttempt = Callable[..., Attempt]
MeterFor = Callable[[str], Meter]


@dataclass(slots=True)
class _Try:
    """One spare tier asked to continue a stream, and what it was billed for."""

    tier: str
    backend: Backend
    meter: Meter
    note: dict[str, object]
    started: float = field(default_factory=time.perf_counter)
    chunk: asyncio.Event = field(default_factory=asyncio.Event)  # a first event came

    def seen(self, event: StreamEvent) -> None:
        """Every event the tier sent: billed, so metered (and the answer named by it)."""
        self.meter.add(event)
        self.chunk.set()

    async def named(self, step: asyncio.Future[StreamEvent], within_s: float = 0.25) -> None:
        """The client left before the tier's first event: the provider bills what it began,
        so wait (at most `within_s`) for the event that names the answer and counts its
        first tokens, then stop the tier."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.chunk.wait(), within_s)
        step.cancel()
        with contextlib.suppress(BaseException):
            await step

    def attempt(
        self, make: MakeAttempt, outcome: AttemptOutcome, final: StreamEvent | None
    ) -> Attempt:
        """Its attempt: the tier's usage when it finished, else what its meter counted."""
        model = (final.model if final else None) or self.backend.model
        billed = self.meter.billed(final)
        return make(self.tier, model, self.started, outcome, repair=self.note, **billed)


def _ways(spares: tuple[str, ...], spare: Spare) -> Iterator[tuple[str, Backend, Continuation]]:
    """Each spare tier that may continue, by its method; a prefill tier, then the same tier
    regenerating (a provider may refuse an assistant prefill it was declared to take)."""
    for tier in spares:
        found = spare(tier)
        if found is None:
            continue
        backend, method = found
        yield tier, backend, method
        if method == "prefill":
            yield tier, backend, "regenerate"


async def repair_stream(
    live: LiveStream,
    request: ClientRequest,
    sent: Sent,
    *,
    spares: tuple[str, ...],
    spare: Spare,
    attempt: MakeAttempt,
    meter_for: MeterFor,
) -> AsyncGenerator[StreamEvent, None]:
    """The rest of a broken stream's answer from the first spare tier that can give it.
    Every tier asked leaves an attempt in the live stream's `repairs` (what it was billed
    for, even when its answer could not be spliced); nothing is sent when none can."""
    prefill_failed: dict[str, bool] = {}  # tier -> whether it refused the prefill (a 400)
    for tier, backend, method in _ways(spares, spare):
        if method == "regenerate" and prefill_failed.get(tier, True) is False:
            continue  # its prefill failed for another reason (down, timed out): next tier
        note: dict[str, object] = {"method": method, "after_chars": len(sent.text), "of": live.tier}
        try:
            question = asked_of(request, sent, method)
        except Unrepairable:
            continue  # nothing asked of this tier
        asked = _Try(tier, backend, meter_for(tier), note)
        events = continued(backend, question, sent, method, asked.seen)
        step = asyncio.ensure_future(anext(events))  # shielded: see `_named`
        try:
            first = await asyncio.shield(step)
        except asyncio.CancelledError:  # the client left while the spare was generating
            await asked.named(step)
            await events.aclose()  # (its first event may have come: the tier stops here)
            live.repairs.append(asked.attempt(attempt, "client_gone", None))
            raise
        except (Unrepairable, BackendError, StopAsyncIteration) as exc:
            await events.aclose()
            note["error"] = str(exc)[:200] or "no answer"
            live.repairs.append(asked.attempt(attempt, "error", None))
            if method == "prefill":
                refused = isinstance(exc, BackendError) and exc.status in (400, 422)
                prefill_failed[tier] = refused
            continue  # the next way (a prefill refused: the same tier, regenerating)
        final = first if first.finish_reason else None
        outcome: AttemptOutcome = "client_gone"
        try:
            yield first
            async for event in events:
                if event.finish_reason:
                    final = event
                yield event
            outcome = "accepted" if final is not None else "error"
        except (BackendError, Unrepairable):
            outcome = "error"
        finally:
            await events.aclose()
            live.repairs.append(asked.attempt(attempt, outcome, final))
        return
