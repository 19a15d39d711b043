"""The generation endpoints' ways in and out: how a body becomes the `ClientRequest` the
cascade runs, and how its answer is written back in the client's API.

Chat completions and completions are the cascade's own language; the Responses API is
translated to chat completions on the way in and back on the way out
(router/api/responses/), so every tier, the local one included, answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from router.api.billable import unseen_images
from router.api.bodies import parse_request, passed_on
from router.api.render import ChunkWriter, StreamWriter, completion_body
from router.api.responses.render import ResponseEvents, Shell, response_body
from router.api.responses.request import ResponsesBody, parse_responses, to_chat, untranslatable
from router.api.validation import output_tokens
from router.backends.base import Completion, Message, Prompt
from router.errors import APIError
from router.failures import failure_error
from router.outcomes import CascadeFailure
from router.policy.model import LimitsSpec
from router.request import ClientRequest


class Exchange(Protocol):
    """One request as the cascade runs it, and how its answer goes back."""

    @property
    def client(self) -> ClientRequest: ...

    def body(self, request_id: str, completion: Completion) -> dict[str, Any]: ...

    def writer(self, request_id: str, model: str) -> StreamWriter: ...

    def failure(self, failure: CascadeFailure, route: str) -> APIError:
        """What the client is told when no tier answered."""
        ...


@dataclass(frozen=True, slots=True)
class _Completions:
    client: ClientRequest
    chat: bool

    def body(self, request_id: str, completion: Completion) -> dict[str, Any]:
        return completion_body(request_id, completion, self.chat)

    def writer(self, request_id: str, model: str) -> StreamWriter:
        return ChunkWriter(request_id, model, self.chat, self.client.include_usage)

    def failure(self, failure: CascadeFailure, route: str) -> APIError:
        return failure_error(
            failure, prompt_param="messages" if self.chat else "prompt", route=route
        )


@dataclass(frozen=True, slots=True)
class _Responses:
    client: ClientRequest
    request: ResponsesBody
    untranslatable: APIError | None  # why only a tier speaking the Responses API will do

    def body(self, request_id: str, completion: Completion) -> dict[str, Any]:
        if completion.raw is not None and completion.raw.get("object") == "response":
            return completion.raw  # a tier that speaks the Responses API: as it answered
        shell = Shell(request_id, self.request, completion.model)
        return response_body(shell, completion_body(request_id, completion, chat=True))

    def writer(self, request_id: str, model: str) -> StreamWriter:
        return ResponseEvents(Shell(request_id, self.request, model))

    def failure(self, failure: CascadeFailure, route: str) -> APIError:
        if failure.reason == "unsupported" and self.untranslatable is not None:
            return self.untranslatable  # names the field that needs the Responses API
        return failure_error(failure, prompt_param="input", route=route)


def _read_responses(raw: Any, limits: LimitsSpec) -> Exchange:
    request = parse_responses(raw)
    if request.max_output_tokens is not None:
        output_tokens("max_output_tokens", request.max_output_tokens, limits)
    problem = untranslatable(request)
    client = parse_request(to_chat(request), limits, chat=True)
    native = {key: value for key, value in raw.items() if key not in ("model", "stream")}
    billable = client.billable
    client = replace(
        client,
        params=replace(client.params, native=native),
        features=client.features | ({"responses"} if problem is not None else set()),
        billable=replace(billable, media_tokens=billable.media_tokens + unseen_images(raw)),
    )
    return _Responses(client, request, problem)


@dataclass(frozen=True, slots=True)
class Packed:
    """A chat or completions request read in another process (router/server/offload.py), as
    it is handed back: without its messages as objects and its fields as sent, which are
    cheaper to rebuild from the body's JSON than to unpickle (for 2,048 messages: 1.2 ms
    against 3.5 ms, and 7.7 ms to read the body again)."""

    client: ClientRequest  # with no messages and no `params.extra`
    turns: tuple[tuple[str, str], ...]  # each message's role and text
    chat: bool
    # the prompt-size refusal its estimate earns when no tier counts tokens (`turns` then
    # empty: it is never rebuilt)
    too_long: APIError | None = None


def pack(exchange: Exchange) -> Packed | None:
    """What `unpack` rebuilds the exchange from (None for a Responses request: its body is
    read again instead)."""
    if not isinstance(exchange, _Completions):
        return None
    client = exchange.client
    turns = tuple((m.role, m.content) for m in client.prompt.messages)
    slim = replace(
        client,
        prompt=replace(client.prompt, messages=()),
        params=replace(client.params, extra={}),
    )
    return Packed(slim, turns, exchange.chat)


def unpack(packed: Packed, raw: dict[str, Any]) -> Exchange:
    """The exchange `pack` was given, from what it kept and the body's JSON (`raw`)."""
    client = packed.client
    messages = tuple(Message(role, text) for role, text in packed.turns)  # type: ignore[arg-type]
    full = replace(
        client,
        prompt=Prompt(messages, client.prompt.text),
        params=replace(client.params, extra=passed_on(raw)),
    )
    return _Completions(full, packed.chat)


@dataclass(frozen=True, slots=True)
class Surface:
    endpoint: str
    read: Callable[[Any, LimitsSpec], Exchange]


CHAT = Surface(
    "/v1/chat/completions",
    lambda raw, limits: _Completions(parse_request(raw, limits, chat=True), chat=True),
)
COMPLETIONS = Surface(
    "/v1/completions",
    lambda raw, limits: _Completions(parse_request(raw, limits, chat=False), chat=False),
)
RESPONSES = Surface("/v1/responses", _read_responses)
