"""What the gateway refuses before routing (router/api/validation.py): every limit at its
boundary, and the OpenAI error it gets. The same rules meet a real server in
tests/integration/test_errors.py and test_malformed.py."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.api import validation
from router.backends.base import Message, Prompt
from router.errors import APIError
from router.policy.model import LimitsSpec
from router.request import BillableInput

NONE = BillableInput()
LIMITS = LimitsSpec(max_messages=3, max_output_tokens=100, default_max_tokens=20)


def test_a_body_over_the_limit_is_413_and_a_slow_one_408() -> None:
    assert (validation.too_large(1024).status, validation.too_large(1024).code) == (
        413,
        "request_too_large",
    )
    slow = validation.too_slow(2.5)
    assert (slow.status, slow.code) == (408, "request_timeout")
    assert "2.5 s" in slow.message
    assert validation.unreadable().status == 400


def test_json_is_parsed_or_400() -> None:
    assert validation.json_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(APIError) as bad:
        validation.json_body(b'{"a": ')
    assert bad.value.status == 400
    assert "could not parse the JSON body" in bad.value.message


def test_tags_at_the_limits_pass_and_one_over_is_400() -> None:
    assert validation.header_tags("") == frozenset()
    assert validation.header_tags(" a , b:c ,, ") == {"a", "b:c"}
    most = ",".join(f"t{i}" for i in range(validation.MAX_TAGS))
    assert len(validation.header_tags(most)) == validation.MAX_TAGS
    assert validation.header_tags("x" * 64) == {"x" * 64}
    for refused in (most + ",one-more", "x" * 65, "semi;colon", "new\nline", "ünï"):
        with pytest.raises(APIError) as bad:
            validation.header_tags(refused)
        assert (bad.value.status, bad.value.param) == (400, "x-cascade-tags")


def test_messages_at_the_limit_pass_and_one_over_is_400() -> None:
    validation.message_count([{}] * 3, LIMITS)
    validation.message_count("not a list: the body's own validation names it", LIMITS)
    with pytest.raises(APIError) as bad:
        validation.message_count([{}] * 4, LIMITS)
    assert (bad.value.param, bad.value.code) == ("messages", "too_many_messages")


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens", "max_output_tokens"])
def test_output_tokens_within_one_to_the_limit_else_400_naming_the_field(key: str) -> None:
    assert validation.output_tokens(key, None, LIMITS) == 20
    assert validation.output_tokens(key, 1, LIMITS) == 1
    assert validation.output_tokens(key, 100, LIMITS) == 100
    for value in (0, 101, -1):
        with pytest.raises(APIError) as bad:
            validation.output_tokens(key, value, LIMITS)
        assert bad.value.param == key
        assert bad.value.message == f"'{key}' must be between 1 and 100; got {value}"


class _Counter:
    def __init__(self, tokens: int | None) -> None:
        self.tokens, self.calls = tokens, 0

    async def __call__(self, _: Prompt) -> int | None:
        self.calls += 1
        return self.tokens


async def test_a_prompt_that_cannot_be_over_the_limit_is_not_tokenized() -> None:
    prompt = Prompt(messages=(Message("user", "hello"),))
    count = _Counter(3)
    tokens, bound = await validation.prompt_tokens(prompt, NONE, 100, count, exact=False)
    assert (tokens, count.calls) == (None, 0)
    assert bound == validation.prompt_upper_bound(prompt) >= 5


async def test_rules_that_match_on_size_get_the_count() -> None:
    prompt = Prompt(messages=(Message("user", "hello"),))
    assert await validation.prompt_tokens(prompt, NONE, 100, _Counter(3), exact=True) == (3, 3)
    # no tier can count: estimated at 4 bytes a token, the bound stays the byte bound
    tokens, bound = await validation.prompt_tokens(prompt, NONE, 100, _Counter(None), exact=True)
    assert (tokens, bound) == (2, validation.prompt_upper_bound(prompt))


async def test_a_prompt_at_the_limit_passes_and_one_token_over_is_400() -> None:
    chat = Prompt(messages=(Message("user", "x" * 400),))
    assert (await validation.prompt_tokens(chat, NONE, 50, _Counter(50), exact=False))[0] == 50
    with pytest.raises(APIError) as bad:
        await validation.prompt_tokens(chat, NONE, 50, _Counter(51), exact=False)
    assert (bad.value.status, bad.value.code, bad.value.param) == (
        400,
        "context_length_exceeded",
        "messages",
    )
    text = Prompt(text="y" * 400)
    with pytest.raises(APIError) as bad:
        await validation.prompt_tokens(text, NONE, 50, _Counter(51), exact=False)
    assert bad.value.param == "prompt"


async def test_tools_and_images_count_against_the_limit_as_well_as_the_text() -> None:
    """A short message with 40 KB of tool definitions is not a short prompt."""
    prompt = Prompt(messages=(Message("user", "hi"),))
    tools = BillableInput(text_bytes=40_000, media_tokens=0, text="x" * 40_000)
    with pytest.raises(APIError) as bad:
        await validation.prompt_tokens(prompt, tools, 4096, _Counter(None), exact=False)
    assert bad.value.code == "context_length_exceeded"
    image = BillableInput(media_tokens=1445)
    tokens, bound = await validation.prompt_tokens(prompt, image, 4096, _Counter(3), exact=True)
    assert tokens == bound == 3 + 1445
    with pytest.raises(APIError):
        await validation.prompt_tokens(prompt, image, 1000, _Counter(3), exact=False)


SCHEMA_LIMITS = LimitsSpec(
    max_schema_bytes=4096, max_schema_depth=6, max_schema_enum_values=10, max_schema_properties=5
)


def test_a_schema_at_its_limits_passes_and_one_over_is_400_naming_the_limit() -> None:
    fits = {"type": "object", "properties": {f"p{i}": {"enum": [1, 2]} for i in range(5)}}
    validation.schema_shape(fits, SCHEMA_LIMITS, "s")
    over: list[tuple[object, str]] = [
        ({"enum": ["x" * 5000]}, "bytes"),
        ({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}, "levels of nesting"),
        ({"anyOf": [{"enum": list(range(6))}, {"enum": list(range(5))}]}, "enum values"),
        ({"properties": {f"p{i}": {} for i in range(6)}}, "properties"),
    ]
    for schema, what in over:
        with pytest.raises(APIError) as bad:
            validation.schema_shape(schema, SCHEMA_LIMITS, "s")
        assert (bad.value.status, bad.value.code, bad.value.param) == (400, "schema_too_large", "s")
        assert what in bad.value.message


def test_the_default_limits_refuse_a_4000_value_enum_and_deep_nesting() -> None:
    enum = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "enum": [{"k": i} for i in range(4000)],
    }
    with pytest.raises(APIError, match="enum values"):
        validation.schema_shape(enum, LimitsSpec(), "s")
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):
        node["items"] = {}
        node = node["items"]  # type: ignore[assignment]
    with pytest.raises(APIError, match="levels of nesting"):
        validation.schema_shape(deep, LimitsSpec(), "s")


def _nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"1" + b"}" * (levels - 1)


def test_a_body_nested_to_the_limit_passes_and_one_level_more_is_400() -> None:
    """orjson reads 1,024 levels but writes 255: a body the gateway could not send on (or
    record) is refused up front, not a 500 later."""
    assert validation.json_depth(validation.json_body(_nested(128), 128), 1000) == 128
    with pytest.raises(APIError) as bad:
        validation.json_body(_nested(129), 128)
    assert (bad.value.status, bad.value.code) == (400, "json_too_deep")
    with pytest.raises(APIError, match="could not parse"):
        validation.json_body(_nested(5000), 128)  # past what any parser here reads


def test_a_schema_deeper_than_json_writers_go_is_a_400_not_a_crash() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(400):
        node["items"] = {}
        node = node["items"]  # type: ignore[assignment]
    with pytest.raises(APIError, match="levels of nesting"):
        validation.schema_shape(deep, LimitsSpec(max_schema_depth=200), "s")


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet='ab[]{}"\\/\n,:'),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='k[]{}"\\', max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_depth_read_from_the_bytes_is_the_parsed_values_depth(value: object) -> None:
    """Brackets, quotes and backslashes inside strings and keys do not count."""
    data = orjson.dumps(value)
    parsed = validation.json_depth(value, 10_000)
    found = validation.bytes_depth(data)
    # one more than the walk only where the deepest container is empty (it holds no value)
    assert found in (parsed, parsed + 1)
    spaced = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    assert validation.bytes_depth(spaced) == found
