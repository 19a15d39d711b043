"""The delay a provider advises before trying again: `retry-after-ms` (milliseconds, as
OpenAI and Azure send it), else `Retry-After` (seconds, or an HTTP date)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

_MOST_S = 86_400.0  # a day: anything longer is not advice worth reading


def advised_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, or None when the headers advise nothing readable."""
    found = headers.get("retry-after-ms")
    if found is not None:
        try:
            millis = float(found)
        except ValueError:
            millis = -1.0
        if 0 <= millis <= _MOST_S * 1000:
            return millis / 1000
    found = headers.get("Retry-After")
    if found is None:
        return None
    try:
        seconds = float(found)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(found).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(seconds, 0.0) if seconds <= _MOST_S else None
