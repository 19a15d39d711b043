"""What the real-client tests share: a cascade of the bundled model in front of an upstream
that answers like a capable model, an SDK client for it, and the tools and schemas they ask
with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import requests
from pydantic import BaseModel

from tests.support.cascade import Cascade
from tests.support.processes import ServerProcess

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
RESPONSES_WEATHER = {"type": "function", **WEATHER["function"]}  # the Responses API's shape


class Capital(BaseModel):
    country: str
    capital: str


def local_then_capable(
    upstream: ServerProcess, *, small: str = "{type: llama_cpp}", more_tiers: str = ""
) -> str:
    """The bundled model as `small`, then the upstream as `large`, on route `auto`. The small
    step's acceptance threshold is 0: only an exact check (structured output) rejects."""
    return f"""
tiers:
  small: {small}
  large: {{type: openai, api_base: "{upstream.url}/v1", model: capable-model}}
{more_tiers}
routes:
  auto:
    cascade:
      - {{tier: small, acceptance: {{threshold: 0.0}}}}
      - {{tier: large}}
"""


@contextmanager
def sdk(cascade: Cascade) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the cascade (closed after use)."""
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-client", max_retries=0) as client:
        yield client


def last_body(upstream: ServerProcess) -> dict[str, Any]:
    """The last request body the fake upstream received."""
    return dict(requests.get(f"{upstream.url}/_fault", timeout=10).json()["bodies"][-1])


@contextmanager
def litellm_sync_client() -> Iterator[Any]:
    """litellm, as a sync client: it sets an event loop of its own as this thread's current
    one and never closes it, so the next test that runs a loop of its own drops it and its
    unclosed self-pipe socket is reported there (a ResourceWarning, an error here). The loop
    it left is closed on the way out, and the thread is left as it was found."""
    import asyncio

    import litellm

    policy = asyncio.get_event_loop_policy()
    before = getattr(policy._local, "_loop", None)  # type: ignore[attr-defined]
    try:
        yield litellm
    finally:
        left = getattr(policy._local, "_loop", None)  # type: ignore[attr-defined]
        if left is not None and left is not before and not left.is_running():
            left.close()
            policy.set_event_loop(before)
