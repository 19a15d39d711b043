"""The delay a provider advises: retry-after-ms, Retry-After in seconds or as an HTTP date."""

from __future__ import annotations

import pytest

from router.backends.retry_after import advised_delay


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # the finer one wins
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": "0.25"}, 0.25),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:10 GMT"}, 10.0),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "99999999"}, None),  # not advice worth reading
        ({"retry-after-ms": "-5"}, None),
        ({}, None),
    ],
)
def test_advised_delays(headers: dict[str, str], expected: float | None) -> None:
    assert advised_delay(headers, now=1767225600.0) == expected  # 2026-01-01T00:00:00Z
