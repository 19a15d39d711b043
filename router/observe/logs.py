"""structlog JSON logging, built per process (no global configuration)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from router.redact import Redactor

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _scrubber(redactor: Redactor) -> structlog.typing.Processor:
    def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redactor(value)
        return event

    return scrub


_CLIENT_FAULTS = frozenset(
    {"RequestPayloadError", "ContentEncodingError", "ConnectionResetError", "BadHttpMessage"}
)


class _Bridge(logging.Handler):
    """Library log records (aiohttp's) as our JSON lines: the message, scrubbed, and the
    exception's type only (its text can carry raw request bytes)."""

    def __init__(self, logger: FilteringBoundLogger) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        if error in _CLIENT_FAULTS:  # a client's broken body or connection: not our error
            method = self._logger.info
        elif record.levelno >= logging.ERROR:
            method = self._logger.error
        else:
            method = self._logger.warning
        method("library_log", logger=record.name, message=record.getMessage(), error=error)


def bridge_library_logs(
    logger: FilteringBoundLogger, names: tuple[str, ...] = ("aiohttp",)
) -> None:
    """Route the named standard-library loggers through `logger` (warnings and above)."""
    for name in names:
        library = logging.getLogger(name)
        library.handlers = [_Bridge(logger)]
        library.setLevel(logging.WARNING)
        library.propagate = False


def make_logger(
    level: str = "info", stream: TextIO | None = None, redactor: Redactor | None = None
) -> FilteringBoundLogger:
    """A JSON-lines logger writing to `stream` (stderr by default); every string field
    scrubbed of secrets."""
    return cast(
        FilteringBoundLogger,
        structlog.wrap_logger(
            structlog.WriteLogger(stream or sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _scrubber(redactor or Redactor()),
                structlog.processors.JSONRenderer(
                    serializer=lambda o, **_: orjson.dumps(o).decode()
                ),
            ],
            cache_logger_on_first_use=True,  # else every call re-binds a lazy proxy
        ),
    )
