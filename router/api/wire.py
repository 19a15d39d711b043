"""The Chat Completions request surface, declared: messages of every role, content parts,
tools, response formats and the other typed fields clients send. Validation only: what a
remote tier receives is the client's body as sent (router/backends/upstream.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Open(BaseModel):
    """Objects whose inner detail evolves with the API: the known keys checked, others kept."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageURL(Open):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(Strict):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(Strict):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]
PART_FEATURES = {"image_url": "image", "input_audio": "audio", "file": "file"}


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, description="A participant's name (passed on).")
    tool_calls: list[ToolCall] | None = None  # assistant
    function_call: FunctionCall | None = None  # assistant, legacy
    tool_call_id: str | None = None  # tool
    refusal: str | None = None  # assistant
    audio: dict[str, Any] | None = None  # assistant: a previous audio answer's id

    @model_validator(mode="after")
    def _shape_of_its_role(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        has_call = self.tool_calls or self.function_call or self.refusal or self.audio
        if self.content is None and not (self.role == "assistant" and has_call):
            raise ValueError("'content' is required (null only for an assistant's tool calls)")
        if self.role != "assistant" and (self.tool_calls or self.function_call):
            raise ValueError("only 'assistant' messages carry tool calls")
        return self

    @property
    def text(self) -> str:
        """The text a local model reads (other parts are features it cannot serve)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def features(self) -> set[str]:
        found = {"tools"} if self.role in ("tool", "function") or self.tool_calls else set()
        if isinstance(self.content, list):
            found |= {PART_FEATURES[p.type] for p in self.content if p.type in PART_FEATURES}
        return found


class FunctionSpec(Open):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionSpec


class NamedTool(Strict):
    type: Literal["function"]
    function: dict[str, Any]


ToolChoice = Literal["none", "auto", "required"] | NamedTool


class JSONSchemaFormat(Open):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_named(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs 'json_schema'")
        return self


class AudioOutput(Open):
    voice: str | dict[str, Any]
    format: str


class Prediction(Strict):
    type: Literal["content"]
    content: str | list[TextPart]
