"""Validate client requests the way OpenAI does, into typed values; every problem is a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.backends.base import GenerationParams, Message, Prompt
from router.errors import APIError, invalid
from router.policy.model import LimitsSpec

_ROLES = {"system", "developer", "user", "assistant"}
_COMMON = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "stream",
    "stream_options",
    "n",
}
CHAT_FIELDS = _COMMON | {"messages", "max_completion_tokens"}
COMPLETION_FIELDS = _COMMON | {"prompt"}
MAX_STOPS = 4


@dataclass(frozen=True, slots=True)
class ClientRequest:
    model: str
    prompt: Prompt
    params: GenerationParams
    stream: bool
    include_usage: bool


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{key}' must be a number", key)
    if not low <= value <= high:
        raise invalid(f"'{key}' must be between {low} and {high}; got {value}", key)
    return float(value)


def _integer(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{key}' must be an integer", key)
    return value


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise invalid(
                    f"{where}[{index}]: content part of type '{kind}' is not supported; "
                    "only 'text' parts are",
                    where,
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{where}[{index}].text must be a string", where)
            texts.append(text)
        return "".join(texts)
    raise invalid(f"{where} must be a string or a list of text parts", where)


def _messages(body: dict[str, Any]) -> tuple[Message, ...]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty array", "messages")
    messages = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"{where} must be an object", where)
        role = item.get("role")
        if role not in _ROLES:
            raise invalid(
                f"{where}.role must be one of {sorted(_ROLES)}; got {role!r}", f"{where}.role"
            )
        unknown = set(item) - {"role", "content", "name"}
        if unknown:
            raise invalid(f"{where}: unsupported field(s) {sorted(unknown)}", where)
        if item.get("content") is None:
            raise invalid(f"{where}.content is required", f"{where}.content")
        messages.append(Message(role, _content(item["content"], f"{where}.content")))
    return tuple(messages)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("'stop' must be a non-empty string or an array of them", "stop")
    if len(stops) > MAX_STOPS:
        raise invalid(f"'stop' holds at most {MAX_STOPS} sequences", "stop")
    return tuple(stops)


def _max_tokens(body: dict[str, Any], limits: LimitsSpec, chat: bool) -> int | None:
    max_tokens = _integer(body, "max_completion_tokens") if chat else None
    key = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, key = _integer(body, "max_tokens"), "max_tokens"
    if max_tokens is not None and not 1 <= max_tokens <= limits.max_output_tokens:
        raise invalid(
            f"'{key}' must be between 1 and {limits.max_output_tokens}; got {max_tokens}", key
        )
    return max_tokens


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("'stream_options' is only allowed with stream=true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise invalid("'stream_options' may only hold 'include_usage'", "stream_options")
        include_usage = bool(options.get("include_usage", False))
    return stream, include_usage


def parse_request(body: Any, limits: LimitsSpec, *, chat: bool) -> ClientRequest:
    """Check one /v1/chat/completions (chat=True) or /v1/completions body."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    unknown = set(body) - (CHAT_FIELDS if chat else COMPLETION_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise invalid(f"unsupported parameter '{name}'", name, "unsupported_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: a route (e.g. 'auto') or a tier name", "model")
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise invalid("only n=1 is supported", "n", "unsupported_parameter")
    stream, include_usage = _stream_flags(body)

    if chat:
        prompt = Prompt(messages=_messages(body))
    else:
        text = body.get("prompt")
        if not isinstance(text, str):
            raise invalid("'prompt' must be a string", "prompt")
        prompt = Prompt(text=text)

    max_tokens = _max_tokens(body, limits, chat)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string", "user")
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise invalid("'top_p' must be greater than 0", "top_p")
    params = GenerationParams(
        max_tokens=max_tokens or limits.default_max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=top_p,
        stop=_stops(body),
        seed=_integer(body, "seed"),
        user=user,
    )
    return ClientRequest(model, prompt, params, stream, include_usage)


def prompt_too_long(tokens: int, limit: int, param: str) -> APIError:
    return invalid(
        f"the prompt is {tokens} tokens; this gateway accepts at most {limit}",
        param,
        "context_length_exceeded",
    )
