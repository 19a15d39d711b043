"""Request ids: the gateway's own, unpredictable, and the client's, sanitised."""

from __future__ import annotations

import re
import secrets

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_ID_HEADERS = ("x-client-request-id", "x-request-id")


def new_request_id() -> str:
    """104 random bits (26 hex characters): the ledger's key, never guessable or chosen by
    a client, so no request can claim, replace or erase another's record."""
    return secrets.token_hex(13)


def client_request_id(headers: object) -> str | None:
    """The client's own id (OpenAI's `X-Client-Request-Id`, or `x-request-id`) when it is
    1-128 characters of A-Z a-z 0-9 . _ : -; kept beside the gateway's id and echoed."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name in CLIENT_ID_HEADERS:
        value = get(name)
        if isinstance(value, str) and _CLIENT_ID.match(value):
            return value
    return None
