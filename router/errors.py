"""OpenAI-style errors: one exception type, one body shape, the right status."""

from __future__ import annotations

import copy
from typing import Any

import orjson


class APIError(Exception):
    """An error a client sees as `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole (the offload worker hands refusals back to the serving process)."""
        fields = {"type_": self.type, "param": self.param, "code": self.code}
        return (_api_error, (self.status, self.message, fields | {"headers": self.headers}))

    def fresh(self) -> APIError:
        """The same error as a new exception, to raise where a local variable holds this one:
        a raised exception's traceback holds every frame it passed, so a frame that holds the
        exception too makes a reference cycle that only the garbage collector frees (~60
        objects a refused request; under a hostile tenant its collections then held the event
        loop ~2 ms twice a second)."""
        return copy.copy(self)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def encoded(self) -> bytes:
        """The body as JSON bytes."""
        return orjson.dumps(self.body())


CLIENT_TEXT = 256  # characters of a client's string (a model name, a user) an error or record keeps
ERROR_TEXT = 1024  # characters of an error message a record keeps


def clip(text: str, limit: int = CLIENT_TEXT) -> str:
    """`text` cut to `limit` characters, saying how much was cut: client strings are echoed
    and stored bounded."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more characters]"


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400: the request itself is wrong."""
    return APIError(400, message, param=param, code=code)


def not_found_model(model: str) -> APIError:
    return APIError(
        404,
        f"The model '{clip(model)}' does not exist: it is neither a route nor a tier of the "
        "active policy (GET /v1/models lists them).",
        param="model",
        code="model_not_found",
    )


def overloaded(message: str) -> APIError:
    return APIError(
        503, message, type_="server_error", code="overloaded", headers={"Retry-After": "1"}
    )


def upstream_failed(message: str, status: int = 502) -> APIError:
    return APIError(status, message, type_="upstream_error", code="upstream_error")


def _api_error(status: int, message: str, fields: dict[str, Any]) -> APIError:
    return APIError(status, message, **fields)
