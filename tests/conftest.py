"""Shared fixtures: the bundled model, and real server processes (cascade, llama.cpp's
OpenAI server as a remote tier, the fake upstream for fault injection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.backends.local_llama import bundled_model_path
from router.ledger import LedgerError, open_reader, parse_ledger_url
from tests.processes import ServerProcess, free_port, start
from tests.processes import start_cascade as start_cascade_process

# litellm (a test client here) must use its bundled price map: there is no internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_server(
    gguf_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """llama-cpp-python's own OpenAI server: a real, separate 'large' tier."""
    port = free_port()
    server = start(
        [
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--chat_format",
            "chatml",
            "--model_alias",
            "smollm2-remote",
            "--n_threads",
            "1",
        ],
        port,
        "/v1/models",
        tmp_path_factory.mktemp("llama") / "server.log",
    )
    yield server
    server.stop()


def policy_yaml(
    large_api_base: str = "",
    *,
    threshold: float = 0.55,
    limits: dict[str, int] | None = None,
    large_model: str = "smollm2-remote",
    large_timeout_s: float = 60,
    large_key_env: str = "NO_KEY_SET",
    small_queue: int = 16,
) -> str:
    limits_yaml = "\n".join(f"  {k}: {v}" for k, v in (limits or {}).items())
    return textwrap.dedent(f"""\
        version: 1
        default_route: auto
        limits:
        {{limits}}
        tiers:
          small:
            type: llama_cpp
            n_ctx: 2048
            max_queue: {small_queue}
            price: {{input_per_1m: 0.01, output_per_1m: 0.02}}
          large:
            type: openai
            api_base: "{large_api_base}"
            model: {large_model}
            timeout_s: {large_timeout_s}
            connect_timeout_s: 2
            api_key_env: {large_key_env}
            price: {{input_per_1m: 1.0, output_per_1m: 3.0}}
        routes:
          auto:
            cascade:
              - tier: small
                acceptance: {{method: mean_prob, threshold: {threshold}}}
              - tier: large
        """).replace("{limits}", limits_yaml or "  max_body_bytes: 1048576")


def ledger_export(
    ledger: str, *flags: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """`cascade ledger export --ledger LEDGER FLAGS...` as a user runs it (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "router", "ledger", "export", "--ledger", ledger, *flags],
        capture_output=True,
        check=check,
        timeout=120,
    )


def read_ledger(url: str) -> list[dict[str, Any]]:
    """Every record in a ledger, read the way `cascade ledger export` reads it."""
    try:
        reader = open_reader(parse_ledger_url(url))
    except LedgerError:  # not created yet
        return []
    try:
        return [json.loads(body) for body in reader.records()]
    finally:
        reader.close()


@dataclass
class Cascade:
    server: ServerProcess
    ledger: str  # URL

    @property
    def url(self) -> str:
        return self.server.url

    def records(self) -> list[dict[str, Any]]:
        return read_ledger(self.ledger)

    def record(self, request_id: str) -> dict[str, Any]:
        """The one record of a request (records are flushed in batches, so wait a little)."""
        deadline = time.monotonic() + 5
        while True:
            matches = [r for r in self.records() if r["request_id"] == request_id]
            if matches or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(matches) == 1, f"{len(matches)} records for {request_id}"
        return matches[0]


StartCascade = Callable[..., Cascade]


@pytest.fixture(scope="module")
def start_cascade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartCascade]:
    """Start `cascade serve` on a policy text; every server is stopped at module end."""
    started: list[ServerProcess] = []

    def run(policy: str, env: dict[str, str] | None = None, ledger: str | None = None) -> Cascade:
        folder = tmp_path_factory.mktemp("cascade")
        (folder / "policy.yaml").write_text(policy)
        ledger = ledger or f"sqlite:///{folder / 'ledger.db'}"
        server = start_cascade_process(
            folder / "policy.yaml", ledger, folder / "server.log", env=env
        )
        started.append(server)
        return Cascade(server, ledger)

    yield run
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def start_fake_upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def run(*flags: str) -> ServerProcess:
        port = free_port()
        server = start(
            ["-m", "router.fake_upstream", "--port", str(port), *flags],
            port,
            "/v1/models",
            tmp_path_factory.mktemp("fake") / "fake.log",
        )
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()
