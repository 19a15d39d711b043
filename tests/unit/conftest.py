"""The in-process tests (`make unit`): no process is started from here. A test that needs
one (a server, redis, the CLI, a fresh interpreter) belongs in tests/integration/."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.backends.base import Backend
from router.budgets import Limiter
from router.budgets.store import MemoryStore
from router.keys.index import KeyIndex
from router.server.app import create_app
from router.server.state import CACHE, RUNTIME, Runtime
from router.settings import Settings
from tests.support.app import POLICY, Serve
from tests.support.fakes import FakeBackend


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise AssertionError("a unit test started a process: move it to tests/integration/")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", _refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_shell", _refuse)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """An app on POLICY whose tiers are the given fakes; returns (client, ledger URL)."""
    clients: list[TestClient[Any, Any]] = []
    # The app starts on a copy whose tiers build no backend (openai tiers without api_base:
    # no model is loaded), then serves POLICY with the given fakes as its backends.
    (tmp_path / "policy.yaml").write_text(
        POLICY.replace("{type: llama_cpp}", "{type: openai, model: s}")
    )
    ledger = f"jsonl:///{tmp_path / 'ledger.jsonl'}"

    async def start(
        policy: str = POLICY, **backends: FakeBackend | None
    ) -> tuple[TestClient[Any, Any], str]:
        from router.policy import parse_policy

        settings = Settings(
            policy_path=tmp_path / "policy.yaml",
            ledger_url=ledger,
            spool_folder=tmp_path / "spool",
        )
        app = create_app(settings)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        loaded = parse_policy(policy.encode(), env={})
        tiers: dict[str, Backend | None] = {"small": None, "large": None}
        tiers.update(backends)
        keys = KeyIndex(loaded.policy, [], file_in_use=False)
        limiter = Limiter(loaded.policy, MemoryStore(), clock=time.time, on_error=print)
        cache = app[CACHE].for_policy(loaded.policy)
        app[RUNTIME].current = Runtime(loaded, tiers, keys, limiter, cache)
        return client, ledger

    yield start
    for client in clients:
        await client.close()
