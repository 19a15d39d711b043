"""A /v1/responses request passed through to an upstream that speaks the Responses API
(`responses_api: true`): the body it receives, and its answer read back as the cascade's
Completion or StreamEvents, the upstream's own objects and events kept as `raw`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.backends.base import BackendError, Completion, GenerationParams, StreamEvent, Usage

_ENDS = {"response.completed", "response.incomplete"}


def native_body(model: str, params: GenerationParams, stream: bool) -> dict[str, Any]:
    """The client's request as it sent it, with the tier's model (and the gateway's default
    output limit when it set none)."""
    assert params.native is not None
    body = {**params.native, "model": model}
    body.setdefault("max_output_tokens", params.max_tokens)
    if stream:
        body["stream"] = True
    return body


def _text(response: Mapping[str, Any]) -> str:
    return "".join(
        str(part.get("text") or "")
        for item in response.get("output") or ()
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def _finish(response: Mapping[str, Any]) -> str:
    if response.get("status") == "incomplete":
        return "length"
    calls = any(
        isinstance(item, dict) and str(item.get("type", "")).endswith("_call")
        for item in response.get("output") or ()
    )
    return "tool_calls" if calls else "stop"


def native_completion(body: dict[str, Any], model: str, ttft_ms: float) -> Completion:
    """A Response object as the cascade's Completion (the object itself kept as `raw`)."""
    if body.get("object") != "response" or not isinstance(body.get("output"), list):
        raise BackendError("error", "the upstream's /responses answer is not a Response")
    usage = Usage.of_response(body.get("usage"))
    return Completion(
        text=_text(body),
        finish_reason=_finish(body),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        model=str(body.get("model") or model),
        ttft_ms=ttft_ms,
        raw=body,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_source=usage.source,
    )


def native_event(event: dict[str, Any], tier: str) -> tuple[StreamEvent, StreamEvent | None]:
    """One Responses stream event as a StreamEvent (passed on as sent), and the final event
    when it ends the answer. A failure event raises, so the client gets the gateway's."""
    kind = str(event.get("type") or "")
    if kind in ("error", "response.failed"):
        detail = (event.get("response") or {}).get("error") or event
        message = detail.get("message") if isinstance(detail, dict) else None
        raise BackendError("error", f"tier '{tier}' failed: {message or kind}")
    text = str(event.get("delta") or "") if kind == "response.output_text.delta" else ""
    passed = StreamEvent(text=text, raw=event)
    if kind not in _ENDS:
        return passed, None
    response = event.get("response") or {}
    usage = Usage.of_response(response.get("usage"))
    return passed, StreamEvent(
        finish_reason=_finish(response),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        model=str(response.get("model") or "") or None,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_source=usage.source,
    )
