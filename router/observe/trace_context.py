"""The W3C trace context a request passes on to the remote tiers it calls (router/observe/tracing.py
decides what it is; the HTTP backends read it). No imports of the router: backends use it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType

# The trace headers of the request being handled, for the remote tiers it calls.
OUTBOUND: ContextVar[Mapping[str, str]] = ContextVar(
    "cascade_outbound_trace", default=MappingProxyType({})
)

_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
)
_MAX_TRACESTATE = 512


def client_context(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's W3C trace headers when well formed (else none: never passed on)."""
    parent = headers.get("traceparent", "").strip().lower()
    if not _TRACEPARENT.match(parent):
        return {}
    found = {"traceparent": parent}
    state = headers.get("tracestate", "")
    if state and len(state) <= _MAX_TRACESTATE and state.isprintable():
        found["tracestate"] = state
    return found
