"""`--since` / `--until` values: ISO dates and times, or a span before now (`15m`, `24h`, `7d`),
turned into the records' own `ts` format so that comparing strings compares times."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from router.records import iso_time

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> str:
    """`2026-11-23`, `2026-11-23T10:00`, `2026-11-23T10:00:00+01:00`, `...Z`, or `24h` ago.

    A time without a zone is UTC. Raises ValueError with the accepted forms.
    """
    value = text.strip()
    if match := _SPAN.match(value):
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        return iso_time((time.time() if now is None else now) - seconds)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an ISO date or time (2026-11-23, "
            "2026-11-23T10:00:00Z) or a span before now (30m, 24h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_time(parsed.timestamp())
