"""What a serving process imports, measured in a fresh interpreter: no scikit-learn, scipy or
litellm to serve the default policy, and no OpenTelemetry SDK while tracing is off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


SERVING = """
import asyncio, sys
from pathlib import Path
import aiohttp
from router.server.app import create_app
from router.backends.registry import build_backends, close_backends
from router.cli.main import build_parser
from router.policy import load_policy
from router.settings import Settings

async def main():
    create_app(Settings())
    loaded = load_policy(Path("policies/default.yaml"))
    assert loaded.routers and loaded.acceptance_models  # the default policy uses both
    loaded.routers["prerouter"].score("What is 2 + 2?")
    async with aiohttp.ClientSession() as session:
        backends = await build_backends(loaded.policy, session)
        await close_backends(backends.values())
    heavy = ("sklearn", "scipy", "skops", "litellm")
    print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))

asyncio.run(main())
"""


def test_serving_the_default_policy_imports_no_sklearn_scipy_or_litellm() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVING],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tracing_off_imports_nothing_of_the_opentelemetry_sdk() -> None:
    code = (
        "import sys; from router.server.app import create_app; "
        "from router.settings import Settings; "
        "create_app(Settings()); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, env=env, timeout=60
    )
    assert found.stdout.strip() == b"[]"
