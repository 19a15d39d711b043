"""Shared fixtures: the bundled model, and real server processes (cascade, llama.cpp's
OpenAI server as a remote tier, the fake upstream for fault injection)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from router.backends.local_llama import bundled_model_path
from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess, free_port, start
from tests.support.processes import start_cascade as start_cascade_process
from tests.support.processes import start_fake_upstream as start_fake_upstream_process
from tests.support.redis_server import RedisServer
from tests.support.surface import sdk

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
        server = start_fake_upstream_process(tmp_path_factory.mktemp("fake") / "fake.log", *flags)
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def served(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> Cascade:
    """A cascade whose one tier is the fake upstream: fast answers for fuzzing. Routes
    `guarded` and the tier `large` (the names the fuzzers use)."""
    upstream = start_fake_upstream()
    return start_cascade(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake, max_concurrency: 64}}
routes:
  guarded: {{cascade: [{{tier: large}}]}}
limits: {{max_output_tokens: 64, default_max_tokens: 16, max_body_bytes: 65536}}
""")


@pytest.fixture
def client(cascade: Cascade) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the module's `cascade` fixture."""
    with sdk(cascade) as found:
        yield found


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the module (its own port and folder)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
