"""structlog JSON logging, built per process (no global configuration)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from router.redact import redact

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def make_logger(level: str = "info", stream: TextIO | None = None) -> FilteringBoundLogger:
    """A JSON-lines logger writing to `stream` (stderr by default)."""
    return cast(
        FilteringBoundLogger,
        structlog.wrap_logger(
            structlog.WriteLogger(stream or sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _redact,
                structlog.processors.JSONRenderer(
                    serializer=lambda o, **_: orjson.dumps(o).decode()
                ),
            ],
            cache_logger_on_first_use=True,  # else every call re-binds a lazy proxy
        ),
    )
