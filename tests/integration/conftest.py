"""The tests where real parts meet, each in its own process: cascade, llama.cpp's server,
redis, the CLI, the browser. Every test here carries the `integration` marker."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
