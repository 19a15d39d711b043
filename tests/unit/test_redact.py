from __future__ import annotations

import io
import json

import pytest

from router.observe.logs import make_logger
from router.redact import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-proj-abcdef123456", "sk-proj-abcdef123456"),
        ("header was Bearer abc.def.ghi", "abc.def.ghi"),
        ("cannot connect to https://bob:hunter2@vllm:8000/v1", "hunter2"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_logger_redacts_every_string_field() -> None:
    stream = io.StringIO()
    make_logger("info", stream).info("upstream_error", detail="key sk-live-0123456789 refused")
    line = json.loads(stream.getvalue())
    assert line["detail"] == "key [redacted] refused"
