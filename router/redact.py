"""Keep credentials out of logs, records and error messages."""

from __future__ import annotations

import re

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+|(?<=://)[^/@\s:]*:[^/@\s]+(?=@))")


def redact(text: str) -> str:
    """Replace API keys, bearer tokens and URL passwords with `[redacted]`."""
    return _SECRET.sub("[redacted]", text)
