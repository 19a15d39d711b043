"""The in-process tests (`make unit`): no process is started from here. A test that needs
one (a server, redis, the CLI, a fresh interpreter) belongs in tests/integration/."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any, NoReturn

import pytest


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise AssertionError("a unit test started a process: move it to tests/integration/")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", _refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_shell", _refuse)
