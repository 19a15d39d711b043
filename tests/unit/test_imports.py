"""The import graph: `classifiers` is a leaf, and router/ is layered (docs/architecture.md).

The layers, lowest first: the domain core (router/'s top-level modules and every package
but the four below, classifiers too), then `api` (the OpenAI wire: bodies, surfaces,
renderers), then `server` (aiohttp), then `cli` and `process`. A module imports nothing
from a layer above its own. (tests/integration/test_import_costs.py measures what a
serving process imports.)"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    """Every module an import statement names (`from a import b` names `a` and `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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


# Each layer above the core, and the layers it may import besides its own and the core.
_LAYERS: dict[str, frozenset[str]] = {
    "router.api": frozenset(),
    "router.server": frozenset({"router.api"}),
    "router.cli": frozenset({"router.api", "router.server", "router.process"}),
    "router.process": frozenset({"router.api", "router.server"}),
}
_ENTRY = frozenset({"router.__main__"})  # `python -m router`: the CLI's door


def _layer(module: str) -> str:
    return next((name for name in _LAYERS if module == name or module.startswith(f"{name}.")), "")


def _module(path: Path, base: Path) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layering_violations(package: Path) -> dict[str, list[str]]:
    """module -> the modules it imports from a layer it may not import."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = _module(path, package.parent)
        if module in _ENTRY:
            continue
        own = _layer(module)
        allowed = {own} | (_LAYERS[own] if own else frozenset())
        bad = sorted(n for n in _imported(path) if _layer(n) and _layer(n) not in allowed)
        if bad:
            found[module] = bad
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    """The domain core, backends, policy and classifiers import nothing from the server,
    API or CLI layers; the API nothing from the server; the server nothing from the CLI."""
    assert layering_violations(REPO / "router") == {}
    assert layering_violations(REPO / "classifiers") == {}


def test_no_aiohttp_web_below_the_server_layer() -> None:
    """`web.Request` (and the rest of aiohttp's server) stays in router/server/ and above."""
    below = [
        path
        for path in (REPO / "router").rglob("*.py")
        if _layer(_module(path, REPO)) in ("", "router.api")
    ]
    offenders = [
        str(path.relative_to(REPO))
        for path in below
        if any(n.startswith("aiohttp.web") for n in _imported(path))
    ]
    assert offenders == []


def test_a_planted_violation_is_found(tmp_path: Path) -> None:
    """The check sees a core module that reaches into the server (lazily, too)."""
    planted = tmp_path / "router"
    (planted / "api").mkdir(parents=True)
    (planted / "routing.py").write_text("def f():\n    from router.server.state import RUNTIME\n")
    (planted / "api" / "wire.py").write_text("from router.cli import main\n")
    (planted / "fine.py").write_text("from router.policy.model import Policy\n")
    assert layering_violations(planted) == {
        "router.api.wire": ["router.cli", "router.cli.main"],
        "router.routing": ["router.server.state", "router.server.state.RUNTIME"],
    }
