"""The request a remote tier sends upstream: one body for every OpenAI-style provider.

The client's fields go as sent (`GenerationParams.extra`: tools, response_format, messages
with every part, ...); the gateway sets `model`, streaming, and `max_tokens` when the client
gave no limit (the policy's default). The OpenAI-compatible tier posts it as JSON; the
litellm tier passes it as keyword arguments (litellm takes OpenAI's parameter names).
"""

from __future__ import annotations

from typing import Any

from router.backends.base import GenerationParams, Prompt

_OPTIONAL = ("temperature", "top_p", "seed", "user")


def request_body(
    model: str, prompt: Prompt, params: GenerationParams, *, stream: bool, chat: bool
) -> dict[str, Any]:
    """Only the fields the client set, with the tier's model. `chat=True` sends a completion
    prompt as one user message (for providers that only speak chat)."""
    if params.extra:
        return _as_sent(model, prompt, params, stream=stream, chat=chat)
    body: dict[str, Any] = {"model": model, "max_tokens": params.max_tokens}
    if prompt.text is None:
        body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
    elif chat:
        body["messages"] = [{"role": "user", "content": prompt.text}]
    else:
        body["prompt"] = prompt.text
    for key in _OPTIONAL:
        value = getattr(params, key)
        if value is not None:
            body[key] = value
    if params.stop:
        body["stop"] = list(params.stop)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _as_sent(
    model: str, prompt: Prompt, params: GenerationParams, *, stream: bool, chat: bool
) -> dict[str, Any]:
    body = dict(params.extra)
    body["model"] = model
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = params.max_tokens
    if chat and "prompt" in body:  # a completion prompt, to a provider that only chats
        body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # usage for the record
    return body
