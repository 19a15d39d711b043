"""Request ids."""

from __future__ import annotations

import itertools
import secrets


class RequestIds:
    """Request ids: a random per-process prefix and a counter (unique, and cheaper than
    a uuid4 per request, which costs a getrandom syscall)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):010x}"
