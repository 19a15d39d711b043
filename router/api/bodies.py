"""Client requests, declared: every OpenAI field a typed, documented attribute.

`parse_request` validates a body against the endpoint's model (pydantic, strict: no
coercion of "1" to 1 or of true to 1) and turns the first problem into OpenAI's 400, naming
the parameter (`messages[0].role`). Fields are added as declarations on `ChatBody` or
`CompletionBody`; what the backends receive is the typed `ClientRequest` built from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from router.api.billable import chat_input
from router.api.validation import message_count, output_tokens, schema_shape
from router.api.wire import (
    AudioOutput,
    ChatMessage,
    FunctionSpec,
    Prediction,
    ResponseFormat,
    Strict,
    Tool,
    ToolChoice,
)
from router.backends.base import GenerationParams, Message, Prompt
from router.errors import APIError, clip, invalid
from router.output_format import InvalidSchema, OutputFormat
from router.policy.model import LimitsSpec
from router.request import BillableInput, ClientRequest

MAX_STOPS = 4
_Strict = Strict


class StreamOptions(_Strict):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


Stop = Annotated[str, Field(min_length=1)]


class _Extensions(_Strict):
    """Sampling, templating and guided-decoding fields of vLLM's OpenAI server (the openai
    SDK's `extra_body`), passed on to remote tiers as sent. The local tier does not serve
    them (feature `extensions`). Not taken: fields that run client text as server code or
    reach into the upstream's internals (`chat_template`, `kv_transfer_params`, `vllm_xargs`,
    `request_id`) and the costly `best_of` / `use_beam_search`."""

    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    length_penalty: float | None = None
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = Field(None, max_length=64)
    include_stop_str_in_output: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    guided_json: str | dict[str, Any] | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    structured_outputs: dict[str, Any] | None = None
    priority: int | None = None

    def extensions_used(self) -> bool:
        return any(getattr(self, name) is not None for name in _Extensions.model_fields)


class _Body(_Extensions):
    """Fields both endpoints take."""

    model: str = Field(
        min_length=1, description="A route (e.g. 'auto') or a tier name (GET /v1/models)."
    )
    max_tokens: int | None = Field(None, description="Tokens to generate at most.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Stop | list[Stop] | None = Field(
        None, description=f"Up to {MAX_STOPS} sequences that end the answer (not included)."
    )
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(None, description="The end user, recorded in the ledger.")
    stream: bool = False
    stream_options: StreamOptions | None = Field(None, description="Only with stream=true.")
    n: int | None = Field(None, ge=1, le=128, description="Choices to generate.")
    logprobs: bool | int | None = None  # chat: bool; completions: an int (top tokens)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None

    def features(self) -> set[str]:
        """Request features a tier must serve to answer this (router/routing.py)."""
        found: set[str] = set()
        if self.n is not None and self.n > 1:
            found.add("n")
        if self.logprobs:
            found.add("logprobs")
        if self.logit_bias:
            found.add("logit_bias")
        if self.presence_penalty or self.frequency_penalty:
            found.add("penalties")
        if self.extensions_used():
            found.add("extensions")
        return found

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} sequences")
        return value

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatBody(_Body):
    """POST /v1/chat/completions: the whole request surface of OpenAI's reference."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(
        None, description="Tokens to generate at most; wins over max_tokens."
    )
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionSpec] | None = Field(None, max_length=128)  # legacy
    function_call: Literal["none", "auto"] | dict[str, Any] | None = None  # legacy
    response_format: ResponseFormat | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(None, max_length=16)
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    prediction: Prediction | None = None
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None

    def features(self) -> set[str]:
        found = super().features()
        for message in self.messages:
            found |= message.features()
        if self.tools or self.functions:
            found.add("tools")
        if self.response_format is not None and self.response_format.type != "text":
            found.add(self.response_format.type)
        if self.modalities and "audio" in self.modalities:
            found.add("audio_output")
        if self.prediction is not None:
            found.add("prediction")
        if self.web_search_options is not None:
            found.add("web_search")
        return found


class CompletionBody(_Body):
    """POST /v1/completions (one prompt string)."""

    prompt: str


# What the gateway sets itself on an upstream call; every other field goes as the client sent it.
_OURS = frozenset({"model", "stream", "stream_options"})
_LOCAL_ROLES: dict[str, Any] = {"tool": "user", "function": "user"}
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _param(loc: tuple[int | str, ...]) -> str | None:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _TYPE_TAGS or "[" in part or "-" in part:
            break  # a union branch pydantic names in the location: the field is what failed
        else:
            text += f".{part}" if text else part
    return text or None


def bad_request(exc: ValidationError) -> APIError:
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    param = _param(loc)
    if error["type"] == "extra_forbidden":
        if len(loc) == 1:
            param = clip(str(param), 64)
            return invalid(f"unsupported parameter '{param}'", param, "unsupported_parameter")
        parent = _param(loc[:-1])
        return invalid(f"{parent}: unsupported field '{clip(str(loc[-1]), 64)}'", parent)
    if error["type"] == "missing":
        return invalid(f"'{param}' is required", param)
    message = error["msg"].removeprefix("Value error, ")
    return invalid(f"'{param}': {message}", param)


def _max_tokens(body: _Body, limits: LimitsSpec) -> int:
    key, value = "max_tokens", body.max_tokens
    if isinstance(body, ChatBody) and body.max_completion_tokens is not None:
        key, value = "max_completion_tokens", body.max_completion_tokens
    return output_tokens(key, value, limits)


def _top_logprobs(body: _Body) -> int | None:
    """Alternatives per token the client wants with logprobs; None when it wants none (chat:
    `logprobs: true` and `top_logprobs`; completions: `logprobs` is the count)."""
    if isinstance(body, ChatBody):
        return (body.top_logprobs or 0) if body.logprobs is True else None
    return body.logprobs if isinstance(body.logprobs, int) and body.logprobs is not True else None


_SCHEMA_PARAM = "response_format.json_schema.schema"


def _output_format(body: _Body, limits: LimitsSpec) -> OutputFormat | None:
    """The format asked for, its schema's shape bounded; compiled after admission
    (`prepare_output`)."""
    if not isinstance(body, ChatBody) or body.response_format is None:
        return None
    kind = body.response_format.type
    if kind == "text":
        return None
    named = body.response_format.json_schema
    schema = named.schema_ if named is not None else None
    if schema is not None:
        schema_shape(schema, limits, _SCHEMA_PARAM)
    return OutputFormat.deferred(kind, schema)


def prepare_output(client: ClientRequest) -> None:
    """Compile the request's response schema (400 when it is not a valid JSON Schema)."""
    output = client.params.output
    if output is None:
        return
    try:
        output.prepare()
    except InvalidSchema as exc:
        message = f"'{_SCHEMA_PARAM}' is not a valid JSON Schema: {exc}"
        raise invalid(message, _SCHEMA_PARAM) from None


def passed_on(body: dict[str, Any]) -> dict[str, Any]:
    """The request's fields as sent, but for what the gateway sets itself (`params.extra`)."""
    return {k: v for k, v in body.items() if k not in _OURS}


def parse_request(body: Any, limits: LimitsSpec, *, chat: bool) -> ClientRequest:
    """Check one /v1/chat/completions (chat=True) or /v1/completions body."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    message_count(body.get("messages"), limits)  # bound the work before validating each one
    try:
        parsed: _Body = (ChatBody if chat else CompletionBody).model_validate(body)
    except ValidationError as exc:
        raise bad_request(exc) from None
    if parsed.stream_options is not None and not parsed.stream:
        raise invalid("'stream_options' is only allowed with stream=true", "stream_options")
    if isinstance(parsed, ChatBody):
        prompt = Prompt(
            messages=tuple(
                Message(_LOCAL_ROLES.get(m.role, m.role), m.text) for m in parsed.messages
            )
        )
    else:
        assert isinstance(parsed, CompletionBody)
        prompt = Prompt(text=parsed.prompt)
    params = GenerationParams(
        max_tokens=_max_tokens(parsed, limits),
        max_tokens_set=parsed.max_tokens is not None
        or (isinstance(parsed, ChatBody) and parsed.max_completion_tokens is not None),
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stops(),
        seed=parsed.seed,
        user=parsed.user,
        output=_output_format(parsed, limits),
        top_logprobs=_top_logprobs(parsed),
        extra=passed_on(body),
    )
    include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
    return ClientRequest(
        parsed.model,
        prompt,
        params,
        parsed.stream,
        include_usage,
        frozenset(parsed.features()),
        billable=chat_input(body) if chat else BillableInput(),
        choices=parsed.n or 1,
    )


class EmbeddingsBody(_Strict):
    """POST /v1/embeddings."""

    model: str = Field(min_length=1, description="A route or a tier that serves embeddings.")
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=2048)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[list[int]], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1, le=16_384)
    user: str | None = None

    @property
    def token_bound(self) -> int:
        """At most this many tokens: a text has no more tokens than UTF-8 bytes (plus one
        for a begin token), a token list its length."""
        items = [self.input] if isinstance(self.input, str) else self.input
        return sum(
            len(item.encode()) + 1
            if isinstance(item, str)
            else (len(item) if isinstance(item, list) else 1)
            for item in items
        )

    @property
    def first_text(self) -> str:
        """What classifiers score: the first input text."""
        if isinstance(self.input, str):
            return self.input
        return self.input[0] if self.input and isinstance(self.input[0], str) else ""


def parse_embeddings(body: Any) -> tuple[EmbeddingsBody, dict[str, Any]]:
    """The validated request, and the client's fields as an upstream receives them."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    try:
        parsed = EmbeddingsBody.model_validate(body)
    except ValidationError as exc:
        raise bad_request(exc) from None
    return parsed, {k: v for k, v in body.items() if k != "model"}
