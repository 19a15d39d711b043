"""The Responses API request, declared, and its translation to a chat completions body.

Translated, for tiers that speak chat completions only: `input` (a string, or messages with
text, image and file parts, function calls and their outputs), `instructions`, function
`tools`, `tool_choice`, `parallel_tool_calls`, `text.format` (json_object, json_schema),
`max_output_tokens`, `temperature`, `top_p`, `top_logprobs`, `reasoning.effort`, `metadata`,
`user`, `service_tier`, `safety_identifier`, `prompt_cache_key`, `stream`. What has no sound
translation — server-side state (`previous_response_id`, `conversation`, `background`, stored
`prompt`s, `include`), hosted tools (web search, file search, computer use, MCP, ...),
reasoning items and item references in `input`, files by id or URL, `truncation: auto`,
`max_tool_calls` — only a tier that speaks the Responses API (`responses_api: true`) serves,
as the client sent it; with none on the route, a 400 names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError

from router.api.bodies import bad_request
from router.api.wire import Open, Strict
from router.errors import APIError, invalid

UNSUPPORTED = "unsupported_feature"


class InputText(Strict):
    type: Literal["input_text"]
    text: str


class InputImage(Strict):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class InputFile(Strict):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(Open):
    """An earlier answer's text, sent back as history."""

    type: Literal["output_text"]
    text: str


class Refusal(Strict):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[
    InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")
]


class MessageItem(Open):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]


class FunctionCallItem(Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[Part]


class OtherItem(Open):
    """An item with no chat completions equivalent (reasoning, item_reference, ...)."""

    type: str


def _item_kind(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else "message"
    return kind if kind in ("message", "function_call", "function_call_output") else "other"


Item = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(_item_kind),
]


class FunctionTool(Strict):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class BuiltinTool(Open):
    type: str


def _tool_kind(value: Any) -> str:
    return "function" if isinstance(value, dict) and value.get("type") == "function" else "other"


ResponseTool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[BuiltinTool, Tag("other")],
    Discriminator(_tool_kind),
]


class FunctionChoice(Strict):
    type: Literal["function"]
    name: str


class TextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(Open):
    effort: Literal["minimal", "low", "medium", "high"] | None = None


class ResponsesBody(Strict):
    """POST /v1/responses."""

    model: str = Field(min_length=1, description="A route or a tier name (GET /v1/models).")
    input: str | list[Item]
    instructions: str | None = None
    tools: list[ResponseTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    user: str | None = None
    reasoning: Reasoning | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    # Server-side state and hosted features: declared so that the refusal names them.
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = None


def _untranslatable(param: str, why: str) -> APIError:
    return invalid(
        f"'{param}' {why}: it has no chat completions translation, and no tier of this route "
        "speaks the Responses API (an `openai` tier with `responses_api: true`)",
        param,
        UNSUPPORTED,
    )


_STATE = "needs state stored by the server"


def untranslatable(body: ResponsesBody) -> APIError | None:
    """Why `body` needs a tier that speaks the Responses API itself; None when its chat
    completions translation asks the same."""
    for param, value in (
        ("previous_response_id", body.previous_response_id),
        ("conversation", body.conversation),
        ("prompt", body.prompt),
    ):
        if value is not None:
            return _untranslatable(param, f"{_STATE} (or send the whole conversation in 'input')")
    simple = (
        ("background", bool(body.background), _STATE),
        ("include", bool(body.include), "asks for stored or hosted items"),
        ("truncation", body.truncation == "auto", "'auto' drops input the client sent"),
        ("max_tool_calls", body.max_tool_calls is not None, "limits hosted tool calls"),
        ("tool_choice", isinstance(body.tool_choice, dict), "names hosted or allowed tools"),
    )
    for param, found, why in simple:
        if found:
            return _untranslatable(param, why)
    for index, tool in enumerate(body.tools or ()):
        if isinstance(tool, BuiltinTool):
            return _untranslatable(f"tools[{index}]", f"is a hosted tool ('{tool.type}')")
    return _untranslatable_input(body.input)


def _untranslatable_input(value: str | list[Any]) -> APIError | None:
    for index, item in enumerate(value if isinstance(value, list) else ()):
        if isinstance(item, OtherItem):
            return _untranslatable(f"input[{index}]", f"is a '{item.type}' item")
        content = item.output if isinstance(item, FunctionCallOutputItem) else None
        content = item.content if isinstance(item, MessageItem) else content
        for number, part in enumerate(content if isinstance(content, list) else ()):
            if _part(part) is None:
                where = "content" if isinstance(item, MessageItem) else "output"
                return _untranslatable(
                    f"input[{index}].{where}[{number}]", "is a file by id or URL"
                )
    return None


def _part(part: Any) -> dict[str, Any] | None:
    """A content part in chat completions' words; None for a file by id or URL."""
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.refusal}
    if isinstance(part, InputImage):
        if part.image_url is None:
            return None
        image: dict[str, Any] = {"url": part.image_url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    assert isinstance(part, InputFile)
    if part.file_url is not None:
        return None
    found = {
        key: value
        for key, value in (
            ("file_data", part.file_data),
            ("file_id", part.file_id),
            ("filename", part.filename),
        )
        if value is not None
    }
    return {"type": "file", "file": found}


def _content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = [found for part in content if (found := _part(part)) is not None]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)  # plain text: what every tier reads
    return parts


def _messages(body: ResponsesBody) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    for item in body.input:
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": _content(item.content)})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant message
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            output = _content(item.output)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return messages


def _response_format(text: TextConfig | None) -> dict[str, Any] | None:
    if text is None or text.format is None or text.format.type == "text":
        return None
    found = text.format
    if found.type == "json_object":
        return {"type": "json_object"}
    named: dict[str, Any] = {"name": found.name or "response"}
    for key, value in (
        ("schema", found.schema_),
        ("strict", found.strict),
        ("description", found.description),
    ):
        if value is not None:
            named[key] = value
    return {"type": "json_schema", "json_schema": named}


def to_chat(body: ResponsesBody) -> dict[str, Any]:
    """The chat completions body that asks what `body` asks; where `untranslatable` says
    it cannot, what it can (for routing, and for no tier but one that speaks Responses)."""
    # Nothing translatable in `input` (e.g. only an item reference): an empty user turn, for
    # routing; such a request is served only by a tier that speaks the Responses API.
    messages = _messages(body) or [{"role": "user", "content": ""}]
    chat: dict[str, Any] = {"model": body.model, "messages": messages}
    if body.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": tool.model_dump(exclude={"type"}, exclude_none=True),
            }
            for tool in body.tools
            if isinstance(tool, FunctionTool)
        ]
    if isinstance(body.tool_choice, FunctionChoice):
        chat["tool_choice"] = {"type": "function", "function": {"name": body.tool_choice.name}}
    elif body.tool_choice is not None:
        chat["tool_choice"] = body.tool_choice
    if (response_format := _response_format(body.text)) is not None:
        chat["response_format"] = response_format
    if body.text is not None and body.text.verbosity is not None:
        chat["verbosity"] = body.text.verbosity
    if body.max_output_tokens is not None:
        chat["max_completion_tokens"] = body.max_output_tokens
    if body.top_logprobs is not None:
        chat["logprobs"], chat["top_logprobs"] = True, body.top_logprobs
    if body.reasoning is not None and body.reasoning.effort is not None:
        chat["reasoning_effort"] = body.reasoning.effort
    for key in (
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "metadata",
        "user",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    ):
        if (value := getattr(body, key)) is not None:
            chat[key] = value
    if body.stream:
        chat["stream"] = True
    return chat


def parse_responses(raw: Any) -> ResponsesBody:
    """The validated request (OpenAI's 400 naming the param otherwise)."""
    if not isinstance(raw, dict):
        raise invalid("the request body must be a JSON object")
    try:
        return ResponsesBody.model_validate(raw)
    except ValidationError as exc:
        raise bad_request(exc) from None
