"""The import graph: `classifiers` is a leaf, and serving imports no scikit-learn or scipy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_classifiers_import_nothing_from_router() -> None:
    """Every import statement, lazy ones inside functions included."""
    offenders = {
        str(path.relative_to(REPO)): sorted(
            n for n in _imported(path) if n.split(".")[0] == "router"
        )
        for path in (REPO / "classifiers").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


SERVING = """
import asyncio, sys
from pathlib import Path
import aiohttp
from router.app import create_app
from router.backends.registry import build_backends, close_backends
from router.cli import build_parser
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
