"""Real clients (the official openai SDK) with tools, structured output, logprobs and image
parts, through a real cascade whose local tier is the bundled model and whose `large` tier
is an upstream process that answers like a capable model. With `model="auto"` the local
tier is skipped for what it cannot serve (and the record says why); with a tier name the
request passes straight through. The upstream receives the client's fields as sent."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.support.cascade import Cascade, StartCascade
from tests.support.fake_upstream import CACHED_TOKENS, REASONING_TOKENS
from tests.support.processes import ServerProcess
from tests.support.surface import WEATHER, last_body, litellm_sync_client, local_then_capable

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Capital(BaseModel):
    country: str
    capital: str
    population_millions: float


@pytest.fixture(scope="module")
def upstream(start_fake_upstream: Callable[..., ServerProcess]) -> ServerProcess:
    return start_fake_upstream()


@pytest.fixture(scope="module")
def cascade(start_cascade: StartCascade, upstream: ServerProcess) -> Cascade:
    more = f"""
  priced:
    type: openai
    api_base: "{upstream.url}/v1"
    model: capable-model
    price: {{input_per_1m: 1.0, cached_input_per_1m: 0.1, output_per_1m: 2.0}}
  via-litellm:
    type: litellm
    api_base: "{upstream.url}/v1"
    model: openai/capable-model
    api_key_env: FAKE_KEY"""
    policy = local_then_capable(upstream, more_tiers=more)
    return start_cascade(policy, env={"FAKE_KEY": "sk-fake"})


@pytest.mark.parametrize("model", ["auto", "large"])
def test_tools_reach_a_tier_that_serves_them_as_sent(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess, model: str
) -> None:
    sent = {
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0.2,
        "metadata": {"app": "tests"},
    }
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ASK, **sent)
    reply = raw.parse()
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.system_fingerprint == "fp_fake"  # what the upstream returned is kept
    assert last_body(upstream) == {**sent, "messages": ASK, "model": "capable-model"}
    record = cascade.record(raw.headers["x-request-id"])
    attempts = [(a["tier"], a["outcome"], a["error"]) for a in record["attempts"]]
    if model == "auto":
        assert attempts == [("small", "skipped", "skipped: tools"), ("large", "accepted", None)]
        # small was never asked: neither an escalation nor a fallback; the reason says why
        assert (raw.headers["x-cascade-escalations"], raw.headers["x-cascade-fallbacks"]) == (
            "0",
            "0",
        )
        assert raw.headers["x-cascade-reason"].startswith("skipped:small:tools")
    else:
        assert attempts == [("large", "accepted", None)]
    assert record["attempts"][-1]["completion_tokens"] == 9  # the upstream's usage


def test_streamed_tool_call_deltas_pass_through(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=ASK,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    name, arguments, finish, usage = "", "", None, None
    for chunk in raw.parse():
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                name += delta.function.name or "" if delta.function else ""
                arguments += delta.function.arguments or "" if delta.function else ""
            finish = choice.finish_reason or finish
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "Paris"}, "tool_calls")
    assert usage is not None and usage.total_tokens == 29
    assert raw.headers["x-cascade-tier"] == "large"  # small, skipped, was never asked:
    assert (raw.headers["x-cascade-escalations"], raw.headers["x-cascade-fallbacks"]) == ("0", "0")
    assert raw.headers["x-cascade-reason"].startswith("skipped:small:tools")
    record = cascade.record(raw.headers["x-request-id"])
    assert [a["outcome"] for a in record["attempts"]] == ["skipped", "accepted"]


def test_a_tool_result_round_trip(client: openai.OpenAI, upstream: ServerProcess) -> None:
    first = client.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages: list[Any] = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER])
    received = last_body(upstream)["messages"]
    assert received[-1] == {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'}
    assert received[1]["tool_calls"][0]["id"] == call.id


@pytest.mark.parametrize("model", ["auto", "large"])
def test_parse_with_a_pydantic_model(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess, model: str
) -> None:
    raw = client.chat.completions.with_raw_response.parse(
        model=model, messages=[{"role": "user", "content": "France?"}], response_format=Capital
    )
    assert isinstance(raw.parse().choices[0].message.parsed, Capital)
    # On "auto" the local tier answers under the schema's grammar; it is served only if
    # it validates (tests/integration/test_structured_output.py), else the capable tier is.
    served = cascade.record(raw.headers["x-request-id"])["attempts"][-1]
    assert served["outcome"] == "accepted" and served["output_check"] == "valid"
    if served["tier"] == "large":
        assert last_body(upstream)["response_format"]["json_schema"]["strict"] is True


def test_json_object_logprobs_and_image_parts_reach_the_capable_tier(
    client: openai.OpenAI, cascade: Cascade
) -> None:
    reply = client.chat.completions.create(
        model="large", messages=ASK, response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content or "") == {"answer": "fake"}
    reply = client.chat.completions.create(model="large", messages=ASK, logprobs=True)
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=image)
    record = cascade.record(raw.headers["x-request-id"])
    assert record["attempts"][0]["error"] == "skipped: image"


def test_plain_text_is_still_answered_locally(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert raw.headers["x-cascade-tier"] == "small"


def test_a_feature_no_tier_serves_names_it_route_and_tiers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="small", messages=ASK, tools=[WEATHER])
    body: Any = error.value.body
    assert body["code"] == "unsupported_feature"
    assert body["message"] == "no tier of route 'small' serves tools (considered: small)"


@pytest.mark.parametrize("model", ["auto", "large"])
def test_langchain_chat_openai(cascade: Cascade, model: str) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    chat = ChatOpenAI(
        model=model,
        base_url=f"{cascade.url}/v1",
        api_key="sk-client",
        max_retries=0,  # type: ignore[arg-type]
    )
    assert chat.invoke("Say hi.").content  # plain text: the local tier on "auto"
    assert "".join(str(part.content) for part in chat.stream("Say hi."))
    called = chat.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert called.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]
    assert called.tool_calls[0]["args"] == {"city": "Paris"}  # type: ignore[attr-defined]
    structured = chat.with_structured_output(Capital).invoke("France?")
    assert isinstance(structured, Capital)


def test_litellm_as_a_client_with_tools(cascade: Cascade) -> None:
    with litellm_sync_client() as litellm:
        reply: Any = litellm.completion(
            model="openai/auto",
            api_base=f"{cascade.url}/v1",
            api_key="sk-client",
            messages=ASK,
            tools=[WEATHER],
        )
    call = reply.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )


@pytest.mark.parametrize("model", ["auto", "large"])
def test_embeddings_from_the_tier_that_serves_them(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess, model: str
) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=model, input=["first text", "the second text"], dimensions=4
    )
    answer = raw.parse()
    assert [len(item.embedding) for item in answer.data] == [4, 4]
    assert last_body(upstream) == {
        "model": "capable-model",
        "input": ["first text", "the second text"],
        "dimensions": 4,
        "encoding_format": "base64",  # what the SDK asks for; it decodes the answer itself
    }
    record = cascade.record(raw.headers["x-request-id"])
    assert record["endpoint"] == "/v1/embeddings" and record["status"] == "ok"
    outcomes = [(a["tier"], a["outcome"]) for a in record["attempts"]]
    if model == "auto":
        assert outcomes == [("small", "skipped"), ("large", "accepted")]
        assert record["attempts"][0]["error"] == "skipped: embeddings"
    else:
        assert outcomes == [("large", "accepted")]
    assert record["attempts"][-1]["prompt_tokens"] == 5  # the upstream's usage
    assert raw.headers["x-cascade-tier"] == "large"


def test_embeddings_no_tier_serves_are_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="small", input="text")
    body: Any = error.value.body
    assert body["code"] == "unsupported_feature"
    assert body["message"] == "no tier of route 'small' serves embeddings (considered: small)"


@pytest.mark.parametrize("stream", [False, True])
def test_cached_and_reasoning_tokens_are_recorded_and_priced(
    client: openai.OpenAI, cascade: Cascade, stream: bool
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="priced",
        messages=ASK,
        stream=stream,
        stream_options={"include_usage": True} if stream else openai.NOT_GIVEN,
    )
    if stream:
        usage = [chunk.usage for chunk in raw.parse() if chunk.usage][-1]
    else:
        usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS  # the upstream's, kept
    attempt = cascade.record(raw.headers["x-request-id"])["attempts"][-1]
    assert (attempt["cached_tokens"], attempt["reasoning_tokens"]) == (
        CACHED_TOKENS,
        REASONING_TOKENS,
    )
    prompt, completion = attempt["prompt_tokens"], attempt["completion_tokens"]
    expected = ((prompt - CACHED_TOKENS) * 1.0 + CACHED_TOKENS * 0.1 + completion * 2.0) / 1e6
    assert attempt["cost_usd"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_pass_through_a_litellm_tier(
    client: openai.OpenAI, upstream: ServerProcess, stream: bool
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="via-litellm", messages=ASK, tools=[WEATHER], stream=stream
    )
    if stream:
        arguments, name = "", ""
        for chunk in raw.parse():
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or ():
                    name += delta.function.name or "" if delta.function else ""
                    arguments += delta.function.arguments or "" if delta.function else ""
    else:
        call = raw.parse().choices[0].message.tool_calls[0]  # type: ignore[index]
        name, arguments = call.function.name, call.function.arguments
    assert (name, json.loads(arguments)) == ("get_weather", {"city": "Paris"})
    assert last_body(upstream)["tools"] == [WEATHER]
    assert raw.headers["x-cascade-tier"] == "via-litellm"


def test_embeddings_through_a_litellm_tier(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="via-litellm", input=["a text"], encoding_format="float"
    )
    assert len(raw.parse().data[0].embedding) > 0
    record = cascade.record(raw.headers["x-request-id"])
    assert record["attempts"][-1]["outcome"] == "accepted"
    assert record["attempts"][-1]["prompt_tokens"] > 0


@pytest.mark.parametrize("model", ["auto", "large"])
async def test_llama_index_openai_like(cascade: Cascade, model: str) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.core.prompts import PromptTemplate
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai_like import OpenAILike

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    async with httpx.AsyncClient() as http:  # closed here: LlamaIndex never closes its own
        llm = OpenAILike(
            model=model,
            api_base=f"{cascade.url}/v1",
            api_key="sk-client",
            max_retries=0,
            is_chat_model=True,
            is_function_calling_model=True,
            context_window=2048,
            max_tokens=16,
            async_http_client=http,
        )
        hi = [ChatMessage(role="user", content="Say hi.")]
        assert (await llm.achat(hi)).message.content
        assert "".join([part.delta or "" async for part in await llm.astream_chat(hi)])
        called = await llm.achat_with_tools(
            [FunctionTool.from_defaults(get_weather)], user_msg="What is the weather in Paris?"
        )
        calls = llm.get_tool_calls_from_response(called, error_on_no_tool_call=True)
        assert (calls[0].tool_name, calls[0].tool_kwargs) == ("get_weather", {"city": "Paris"})
        capital = await llm.astructured_predict(
            Capital, PromptTemplate("The capital of {country}?"), country="France"
        )
        assert isinstance(capital, Capital)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_from_the_local_tier(
    client: openai.OpenAI, cascade: Cascade, stream: bool
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
        stream=stream,
    )
    if stream:
        chunks = [chunk for chunk in raw.parse() if chunk.choices]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        tokens = [
            t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content or ()
        ]
    else:
        choice = raw.parse().choices[0]
        text, tokens = choice.message.content or "", list(choice.logprobs.content or ())  # type: ignore[union-attr]
    assert raw.headers["x-cascade-tier"] == "small"
    assert "".join(token.token for token in tokens) == text
    for token in tokens:
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob >= token.logprob  # the likeliest first
        assert bytes(token.bytes or ()).decode() == token.token
    confidence = cascade.record(raw.headers["x-request-id"])["attempts"][0]["confidence"]
    mean = math.exp(sum(token.logprob for token in tokens) / len(tokens))
    assert confidence["value"] == pytest.approx(mean, abs=1e-4)  # what the cascade judged


def test_legacy_completion_and_responses_logprobs_from_the_local_tier(
    client: openai.OpenAI,
) -> None:
    legacy = client.completions.create(model="small", prompt="Hello", max_tokens=4, logprobs=2)
    found = legacy.choices[0].logprobs
    assert found is not None and found.tokens and "".join(found.tokens) == legacy.choices[0].text
    assert all(len(alternatives) == 2 for alternatives in found.top_logprobs or ())
    response = client.responses.create(
        model="small", input="Say hi.", max_output_tokens=8, top_logprobs=2
    )
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.logprobs and "".join(t.token for t in part.logprobs) == response.output_text


def test_vllm_fields_in_extra_body_reach_a_remote_tier_and_skip_the_local_one(
    client: openai.OpenAI, cascade: Cascade, upstream: ServerProcess
) -> None:
    extra = {
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, extra_body=extra
    )
    assert raw.headers["x-cascade-tier"] == "large"
    assert {key: last_body(upstream)[key] for key in extra} == extra
    record = cascade.record(raw.headers["x-request-id"])
    assert record["attempts"][0]["error"] == "skipped: extensions"
    with pytest.raises(openai.BadRequestError) as error:  # not a field the gateway passes on
        client.chat.completions.create(
            model="large", messages=ASK, extra_body={"chat_template": "{{ 7 * 7 }}"}
        )
    assert error.value.body["param"] == "chat_template"  # type: ignore[index]
