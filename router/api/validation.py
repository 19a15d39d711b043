"""What the gateway refuses before it routes a request: every limit a request must pass, and
the OpenAI error each failure gets. One home, so a limit is checked the same way on every
endpoint (tests/unit/test_validation.py).

The body's fields are validated by their declarations (router/api/bodies.py, the Responses
API's request.py); what is here are the gateway's own limits on top of them: the body's size
and arrival time, its JSON, the `x-cascade-tags` header, how many messages, how many tokens to
generate, the shape of a response schema, and how many prompt tokens (counted once per
request: `prompt_tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator

import orjson

from router.backends.base import Prompt
from router.backends.prompt_tokens import estimate_tokens
from router.errors import APIError, invalid
from router.policy.model import LimitsSpec
from router.request import BillableInput

MAX_TAGS = 16
_TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
# What a chat template adds per message at most (role markers), in the prompt's upper bound.
_TEMPLATE_TOKENS_PER_MESSAGE = 8


def too_large(limit: int) -> APIError:
    """413: a body over `limits.max_body_bytes` (declared or as it arrives)."""
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def too_slow(timeout: float) -> APIError:
    """408: a body that did not arrive within the settings' `body_timeout_s`."""
    message = f"the request body did not arrive within {timeout:g} s"
    return APIError(408, message, code="request_timeout")


def unreadable() -> APIError:
    """400: a body whose framing or content encoding is broken (e.g. not the gzip it claims)."""
    return invalid("could not read the request body (its framing or content encoding is broken)")


def json_body(data: bytes, max_depth: int = 128) -> object:
    """The body's JSON, or 400; nested at most `max_depth` levels (every part of the gateway
    that writes JSON again, upstream or to the ledger, can then write it)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"could not parse the JSON body: {exc}") from None
    if bytes_depth(data) > max_depth:
        raise invalid(
            f"the JSON body is nested more than {max_depth} levels deep", None, "json_too_deep"
        )
    return value


_NOT_BRACKETS_OR_QUOTES = bytes(sorted(set(range(256)) - set(b'[]{}"')))


def bytes_depth(data: bytes) -> int:
    """How deeply a valid JSON text nests, counted as `json_depth` counts (its containers,
    and one more for what the deepest holds), read from its bytes in a few passes of C: the
    escapes dropped, everything but brackets and quotes dropped, then (in numpy) the brackets
    outside strings (after an even number of quotes) summed as they open and close. A walk
    of the parsed value in Python took 24 ms for 5,000 tools; cutting out the strings with
    split, 3.3 ms (one object per string); this, 1.4 ms."""
    import numpy as np

    text = data.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in data else data
    kept = text.translate(None, _NOT_BRACKETS_OR_QUOTES)
    if not kept:
        return 1
    codes = np.frombuffer(kept, dtype=np.uint8)
    outside = (np.cumsum(codes == ord('"'), dtype=np.int32) & 1) == 0
    opening = (codes == ord("[")) | (codes == ord("{"))
    closing = (codes == ord("]")) | (codes == ord("}"))
    steps = (opening.astype(np.int32) - closing) * outside
    return int(np.cumsum(steps).max()) + 1


def nested(value: object) -> Iterator[tuple[object, int]]:
    """Every value inside `value` (itself included) with its depth, without recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def json_depth(value: object, most: int) -> int:
    """How deeply `value` nests (stopping once past `most`)."""
    deepest = 0
    for _, depth in nested(value):
        deepest = max(deepest, depth)
        if deepest > most:
            break
    return deepest


def header_tags(raw: str) -> frozenset[str]:
    """The `x-cascade-tags` header: at most 16 comma-separated tags of a safe alphabet."""
    tags = [tag.strip() for tag in raw.split(",") if tag.strip()]
    if len(tags) > MAX_TAGS or not all(_TAG.match(tag) for tag in tags):
        raise invalid(
            f"x-cascade-tags: at most {MAX_TAGS} comma-separated tags, each 1-64 characters "
            "of A-Z a-z 0-9 _ . : -",
            "x-cascade-tags",
        )
    return frozenset(tags)


def message_count(messages: object, limits: LimitsSpec) -> None:
    """At most `limits.max_messages` (checked before each message is validated)."""
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise invalid(
            f"'messages' holds {len(messages)} messages; at most {limits.max_messages}",
            "messages",
            "too_many_messages",
        )


def output_tokens(key: str, value: int | None, limits: LimitsSpec) -> int:
    """Tokens to generate: the client's `key` (`max_tokens`, `max_completion_tokens`,
    `max_output_tokens`) within 1..`limits.max_output_tokens`, else the default."""
    if value is None:
        return limits.default_max_tokens
    if not 1 <= value <= limits.max_output_tokens:
        raise invalid(f"'{key}' must be between 1 and {limits.max_output_tokens}; got {value}", key)
    return value


def _too_big(what: str, found: int, limit: int, param: str) -> APIError:
    return invalid(
        f"'{param}' is too large: {found} {what}; this gateway accepts at most {limit}",
        param,
        "schema_too_large",
    )


def schema_shape(schema: object, limits: LimitsSpec, param: str) -> None:
    """Bound a client's JSON Schema before anything compiles it: its depth, its enum values
    and properties (OpenAI bounds the last two alike), then its bytes. Linear in its size."""
    enum_values = properties = 0
    for node, depth in nested(schema):  # refused as soon as a bound is passed
        if depth > limits.max_schema_depth:
            raise _too_big("levels of nesting", depth, limits.max_schema_depth, param)
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                enum_values += len(node["enum"])
                if enum_values > limits.max_schema_enum_values:
                    limit = limits.max_schema_enum_values
                    raise _too_big("enum values", enum_values, limit, param)
            if isinstance(node.get("properties"), dict):
                properties += len(node["properties"])
                if properties > limits.max_schema_properties:
                    limit = limits.max_schema_properties
                    raise _too_big("properties", properties, limit, param)
    size = len(orjson.dumps(schema))  # (its depth is bounded by now)
    if size > limits.max_schema_bytes:
        raise _too_big("bytes", size, limits.max_schema_bytes, param)


def prompt_too_long(tokens: int, limit: int, param: str) -> APIError:
    return invalid(
        f"the prompt is {tokens} tokens; this gateway accepts at most {limit}",
        param,
        "context_length_exceeded",
    )


def prompt_upper_bound(prompt: Prompt) -> int:
    """Tokens the prompt has at most, without tokenizing it (tokens <= UTF-8 bytes)."""
    texts = prompt.texts
    return sum(len(t.encode()) for t in texts) + _TEMPLATE_TOKENS_PER_MESSAGE * len(texts) + 4


async def prompt_tokens(
    prompt: Prompt,
    billable: BillableInput,
    limit: int,
    count: Callable[[Prompt], Awaitable[int | None]],
    *,
    exact: bool,
) -> tuple[int | None, int]:
    """Enforce `limits.max_prompt_tokens` on everything the request sends as input (its
    messages, and what `billable` holds: tools, tool calls, schemas, images, audio, files);
    the count when `exact` (rules match on it), and an upper bound of the input's tokens
    (what a budget reserves).

    A request that cannot be over the limit is not tokenized unless a rule needs its size.
    Text is counted by `count` (the local tier's tokenizer, chat template included), else
    estimated at 4 bytes per token (as `cascade policy explain` does); media at their bound.
    """
    upper = input_upper_bound(prompt, billable)
    if upper <= limit and not exact:
        return None, upper
    counted = await count(prompt)
    extra = await count(Prompt(text=billable.text)) if billable.text and counted is not None else 0
    if counted is None or extra is None:
        tokens = estimated_input(prompt, billable)
    else:
        tokens = counted + extra + billable.media_tokens
    if tokens > limit:
        raise _too_long(prompt, tokens, limit)
    return tokens, tokens if counted is not None and extra is not None else upper


def _too_long(prompt: Prompt, tokens: int, limit: int) -> APIError:
    return prompt_too_long(tokens, limit, "messages" if prompt.is_chat else "prompt")


def input_upper_bound(prompt: Prompt, billable: BillableInput) -> int:
    """Input tokens at most, without tokenizing (what a budget reserves)."""
    return prompt_upper_bound(prompt) + billable.text_bytes + billable.media_tokens


def estimated_input(prompt: Prompt, billable: BillableInput) -> int:
    """Input tokens as estimated when no tier can count them (4 bytes a token; media at their
    bound)."""
    return estimate_tokens(prompt) + (billable.text_bytes + 3) // 4 + billable.media_tokens


def estimated_too_long(prompt: Prompt, billable: BillableInput, limit: int) -> APIError | None:
    """What `prompt_tokens` refuses the input with when no tier can count tokens, if it does
    (the offload worker refuses a large body with it before the loop rebuilds the request)."""
    if input_upper_bound(prompt, billable) <= limit:
        return None
    tokens = estimated_input(prompt, billable)
    return _too_long(prompt, tokens, limit) if tokens > limit else None
