"""The backend contract and the values that cross it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from router.output_format import OutputFormat
from router.redact import redact

if TYPE_CHECKING:
    import aiohttp

    from router.backends.spec import TierSpecBase


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "developer", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """What to answer: a chat (`messages`) or a legacy completion prompt (`text`)."""

    messages: tuple[Message, ...] = ()
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.text is None

    @property
    def texts(self) -> list[str]:
        """The text the model reads, without roles or template."""
        return [self.text] if self.text is not None else [m.content for m in self.messages]

    def char_count(self) -> int:
        return sum(len(text) for text in self.texts)

    @property
    def question(self) -> str:
        """What classifiers score: the last user message (or the completion prompt)."""
        if self.text is not None:
            return self.text
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else (self.messages[-1].content if self.messages else "")


UsageSource = Literal["reported", "counted", "estimated"]
"""Where an attempt's token counts come from: the provider's own usage (`reported`), the
gateway's count (`counted`: a local tier's tokenizer, or nothing generated), or a bounded
estimate (`estimated`: an answer cut off, abandoned or sent without usage)."""

TokenLogprob = dict[str, Any]
"""One token as OpenAI's chat `logprobs.content` lists it: token, logprob, bytes and (for the
chosen token) top_logprobs."""


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int
    max_tokens_set: bool = False  # the client asked for max_tokens (else the default)
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    user: str | None = None
    output: OutputFormat | None = None  # response_format json_object / json_schema
    top_logprobs: int | None = None  # the client asked for logprobs, with this many alternatives
    # A /v1/responses request as the client sent it (but for `model` and `stream`): what a
    # tier that speaks the Responses API receives instead of the chat translation.
    native: Mapping[str, Any] | None = None
    # The client's request fields as sent (messages with every part and tool call, tools,
    # response_format, ...), but for what the gateway sets itself: what an OpenAI-style
    # upstream receives. A local tier reads the typed fields above instead.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # who the call is for: a tier's slots are shared fairly among teams (backends/slots.py),
    # each held to its `limits.max_in_flight` calls on the tier at once
    tenant: str = ""
    tenant_cap: int | None = None


@dataclass(slots=True)
class Completion:
    """One finished answer from one tier."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    token_logprobs: list[float] | None = None
    ttft_ms: float | None = None
    raw: dict[str, Any] | None = None  # the upstream body, returned as-is on pass-through
    retries: int = 0  # calls retried before this answer (router/backends/guard.py)
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's cache (billed less)
    reasoning_tokens: int = 0  # of completion_tokens, spent reasoning (billed as output)
    logprobs: list[TokenLogprob] | None = None  # a local answer's, when the client asked
    usage_source: UsageSource = "reported"  # a local tier's: counted; none sent: estimated
    upstream_id: str | None = None  # the provider's id of the answer (its usage export's key)
    queued_ms: float = 0.0  # waited for one of the tier's slots


@dataclass(slots=True)
class StreamEvent:
    """A piece of a streamed answer; the last one carries finish_reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    retries: int = 0  # on the first event: calls retried before the stream began
    raw: dict[str, Any] | None = None  # the upstream's chunk, passed on as it came
    cached_tokens: int = 0  # on the last event, as in Completion
    reasoning_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None  # the tokens of `text`, when asked for
    usage_source: UsageSource = "reported"  # of the tokens this event carries (as Completion)
    upstream_id: str | None = None  # on the last event, as in Completion
    queued_ms: float = 0.0  # on the first event: waited for one of the tier's slots


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of an OpenAI-style `usage` object, its details included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = field(default=False, compare=False)  # the provider sent it

    @property
    def source(self) -> UsageSource:
        return "reported" if self.reported else "estimated"

    @classmethod
    def of_response(cls, usage: Mapping[str, Any] | None) -> Usage:
        """The Responses API's usage (input/output tokens and their details)."""
        found = usage or {}
        return cls.of(
            {
                "prompt_tokens": found.get("input_tokens"),
                "completion_tokens": found.get("output_tokens"),
                "prompt_tokens_details": found.get("input_tokens_details"),
                "completion_tokens_details": found.get("output_tokens_details"),
            }
        )

    @classmethod
    def of(cls, usage: Mapping[str, Any] | None) -> Usage:
        found = usage or {}
        prompt = found.get("prompt_tokens_details") or {}
        completion = found.get("completion_tokens_details") or {}
        return cls(
            _count(found.get("prompt_tokens")),
            _count(found.get("completion_tokens")),
            _count(prompt.get("cached_tokens")),
            _count(completion.get("reasoning_tokens")),
            reported=isinstance(found.get("prompt_tokens"), int)
            or isinstance(found.get("completion_tokens"), int),
        )


def upstream_id(body: Mapping[str, Any]) -> str | None:
    """The provider's id of an answer or chunk (`chatcmpl-...`, the key of its usage
    export), at most 128 characters; None when it sent none."""
    found = body.get("id")
    return found[:128] if isinstance(found, str) and found else None


def _count(value: Any) -> int:
    """A token count an upstream sent: a non-negative int, else 0 (never trusted blindly)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# error: failed; timeout; shed: saturated here; unavailable: not reachable or not configured;
# rejected: the request exceeds what the tier takes (e.g. its context); truncated: a stream
# that ended before its end marker; unsupported: the tier does not serve a request feature.
Outcome = Literal["error", "timeout", "shed", "unavailable", "rejected", "truncated", "unsupported"]


def no_embeddings(tier: str) -> BackendError:
    return BackendError("unsupported", f"tier '{tier}' does not serve embeddings")


class BackendError(Exception):
    """A tier could not answer. `kind` drives the cascade; `status` is the upstream's, if any."""

    def __init__(self, kind: Outcome, message: str, status: int | None = None) -> None:
        message = redact(message)  # upstream text can echo credentials
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.unconfigured = False  # the tier has no backend (e.g. no api_base set)
        self.retries = 0  # calls retried before giving up (router/backends/guard.py)
        self.retry_after: str | None = None  # an upstream 429's Retry-After, passed on
        self.retry_after_s: float | None = None  # the delay it advised (Retry-After, -ms)
        self.code: str | None = None  # the upstream error's own `code` (content_filter, ...)


_REFUSAL_CODES = frozenset({"content_filter", "content_policy_violation"})


def is_refusal(error: BackendError) -> bool:
    """A provider's content-policy refusal: a 400 whose code (or, from providers that send
    none, whose message) says its content filter refused the request."""
    if error.status != 400:
        return False
    text = error.message.lower()
    return error.code in _REFUSAL_CODES or any(
        marker in text for marker in ("content_filter", "content management policy")
    )


FailureClass = Literal[
    "unavailable",
    "timeout",
    "rate_limited",
    "context_length_exceeded",
    "content_filter",
    "invalid_request",
]
"""Why a tier failed, as a route's `fallback_on` names it."""
DEFAULT_FALLBACK_ON: tuple[FailureClass, ...] = (
    "unavailable",
    "timeout",
    "rate_limited",
    "context_length_exceeded",
)
"""What a route falls over on unless it says otherwise: the provider's trouble, and a prompt
too long for one tier; never a content-policy refusal or a request the provider refused."""

_CONTEXT_MARKERS = ("context_length_exceeded", "maximum context length", "context window")


def failure_class(error: BackendError) -> FailureClass:
    """The class of a tier's failure: a timeout; a request too long for the tier (its declared
    window, or the provider's own 400); a 429; a content-policy refusal; another 400/413/422
    (the request as sent, `invalid_request`); anything else - 5xx, resets, unreachable, an open
    breaker, a full queue, and 401/403/404 (this tier's key or model, not the request) - is
    `unavailable`."""
    found: FailureClass = "unavailable"
    text = f"{error.code or ''} {error.message}".lower()
    if error.kind in ("timeout", "rejected"):
        found = "timeout" if error.kind == "timeout" else "context_length_exceeded"
    elif error.status == 429:
        found = "rate_limited"
    elif is_refusal(error):
        found = "content_filter"
    elif error.status in (400, 413, 422):
        too_long = any(marker in text for marker in _CONTEXT_MARKERS)
        found = "context_length_exceeded" if too_long else "invalid_request"
    return found


# ready, or, for a tier behind a circuit breaker, its breaker open (skipped) or half-open.
TierState = Literal["ready", "half_open", "open"]
Feature = Literal[
    "chat",
    "completion",
    "stream",
    "token_logprobs",
    # request features (router/api/bodies.py): a tier that lacks one is skipped for requests
    # that use it
    "tools",
    "json_object",
    "json_schema",
    "logprobs",
    "image",
    "audio",
    "file",
    "n",
    "logit_bias",
    "penalties",
    "audio_output",
    "prediction",
    "web_search",
    "embeddings",  # POST /v1/embeddings
    "extensions",  # vLLM's sampling, templating and guided-decoding fields (top_k, ...)
    # POST /v1/responses with what has no chat completions translation (server-side state,
    # hosted tools, reasoning items): only a tier that speaks the Responses API serves it
    "responses",
]
"""What a backend serves: `chat` and `completion` prompts, `stream`ed answers, per-token
log-probabilities (`token_logprobs`, which logprob-based acceptance needs), and the request
features above."""
_SERVING: frozenset[Feature] = frozenset({"chat", "completion", "stream", "token_logprobs"})
REQUEST_FEATURES: frozenset[Feature] = frozenset(get_args(Feature)) - _SERVING


EMBEDDINGS_REQUEST: frozenset[Feature] = frozenset({"embeddings"})
"""What an embeddings request needs of a tier (routing and the executor both ask it)."""

REMOTE_FEATURES: frozenset[Feature] = (REQUEST_FEATURES - {"responses"}) | (
    _SERVING - {"token_logprobs"}
)
"""A remote OpenAI-style tier: the upstream serves (or refuses, in its own words) every
request feature; the gateway does not second-guess it. Speaking the Responses API is a
tier's own declaration (`responses_api`)."""


class Backend(Protocol):
    """What the cascade, the server and the metrics need from a tier. What a tier type is
    (local or remote) and what it serves is its `BackendType`'s, below; nothing checks a
    backend's class."""

    name: str
    model: str

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot of this backend (0 when it does not queue)."""
        ...

    @property
    def state(self) -> TierState:
        """Whether calls go through now (`open`: skipped by its breaker)."""
        ...

    async def count_tokens(self, prompt: Prompt) -> int | None:
        """The prompt's tokens as this backend's model sees them; None when it cannot tell."""
        ...

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion: ...

    def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]: ...

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """An OpenAI embeddings answer for the client's body (its `model` set by the tier);
        BackendError("unsupported") from a backend that does not embed."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BackendType:
    """One tier `type` of the policy language: its spec, and how a backend is built from it.

    Registered once in router/backends/registry.py; the policy schema, the loader, the
    runtime, `cascade policy explain` and the labeler all read it from there.
    """

    tag: str  # the tier's `type` in a policy file
    spec: type[TierSpecBase]
    local: bool  # runs in this process: its cost is compute time, not a bill
    build: Callable[[str, Any, aiohttp.ClientSession], Awaitable[Backend | None]]
    features: frozenset[Feature]  # what its backends serve (a tier's `features` narrows it)
    # Counts a prompt's tokens from the spec alone, without loading the model (explain).
    offline_counter: Callable[[Any], Callable[[Prompt], int]] | None = None
