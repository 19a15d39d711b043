"""Every command in README.md, docs/, policies/README.md and classifiers/README.md runs, as
written, so the docs stay true. A shell block's info string says how:

- ```` ```sh ````: run with bash (errexit, pipefail) in a scratch copy of the checkout (its
  `var/` and policies are the copy's own; `.venv` and the code are the checkout's), with
  `.venv/bin` on PATH; a file's blocks run in order in one copy, so the README's tour reads the
  ledger its demo wrote. It must exit 0.
- ```` ```sh serves ````: its last command serves in the foreground on 127.0.0.1:8080; it runs
  with that port moved to a free one (`make run PORT=N`, through MAKEFLAGS; `:8080` in the
  block's text) until `/readyz` answers, then it is stopped.
- ```` ```sh server ````: asks a running `cascade serve` at 127.0.0.1:8080 (the default policy,
  started here on a free port that replaces `8080`).
- ```` ```sh needs=X ````: not run here, for want of X — one of NEEDS.

A block of commands with no info string fails the test: it must say which of these it is.
The README's tour is checked further: the demo sees every reason the README's sample shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    ROOT / "policies" / "README.md",
    ROOT / "classifiers" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
NEEDS = {
    "docker": "Docker and images (make deploy-test runs the stack)",
    "gpu": "a GPU serving a large model",
    "cluster": "a Kubernetes cluster",
    "provider-key": "a paid provider's API key",
    "long": "minutes to hours (a label run, a wheel build, the test suite itself)",
}
_FENCE = re.compile(r"(?ms)^```([^\n]*)\n(.*?)^```")
_SHELL = ("sh", "bash", "shell", "console")
_COMMAND = re.compile(r"^\s*(\$ |cascade |\.venv/|make |docker |curl |kubectl |python )")
_COPIED = ("policies", "Makefile", "pyproject.toml", "constraints.txt")  # written by docs


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    mode: str  # run | serves | server | needs=X
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    text = path.read_text()
    for match in _FENCE.finditer(text):
        info, body = match.group(1).split(), match.group(2)
        language, modes = (info[0], info[1:]) if info else ("", [])
        line = text.count("\n", 0, match.start()) + 1
        where = str(path.relative_to(ROOT))
        if language in _SHELL:
            yield Block(where, line, modes[0] if modes else "run", body)
        elif not language and any(_COMMAND.match(row) for row in body.splitlines()[:1]):
            yield Block(where, line, "untagged", body)


ALL = [block for doc in DOCS for block in blocks(doc)]


def test_every_command_block_says_how_it_runs() -> None:
    assert len(ALL) > 10
    wrong = [
        f"{b}: {b.mode}"
        for b in ALL
        if b.mode not in ("run", "serves", "server") and b.mode.removeprefix("needs=") not in NEEDS
    ]
    assert wrong == [], "tag it sh, sh serves, sh server or sh needs=(" + ", ".join(NEEDS) + ")"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout the docs may write in: what they write (policies, var/) copied
    with their times (so make sees nothing to rebuild), the rest linked."""
    root = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name in (".git", "var"):
            continue
        if entry.name in _COPIED:
            if entry.is_dir():
                shutil.copytree(entry, root / entry.name, copy_function=shutil.copy2)
            else:
                shutil.copy2(entry, root / entry.name)
        else:
            (root / entry.name).symlink_to(entry)
    return root


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    env.pop("PORT", None)  # llama_cpp.server would take it over its --port
    env["MAKEFLAGS"] = f"PORT={port}"  # `make run` serves there, as if run `make run PORT=...`
    return env


def _script(block: Block, port: int) -> str:
    return "set -euo pipefail\n" + block.text.replace(":8080", f":{port}")


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def _serving(argv: list[str], scratch: Path, port: int, timeout_s: float) -> Iterator[None]:
    """`argv` started in its own process group, until it answers /readyz on `port`; then
    (after the block) the whole group stopped."""
    process = subprocess.Popen(
        argv,
        cwd=scratch,
        env=_env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", process, timeout_s)
        yield
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def server(scratch: Path) -> Iterator[int]:
    """`cascade serve` on the default policy, for blocks that ask a running one."""
    port = free_port()
    argv = ["cascade", "serve", "--policy", "policies/default.yaml", "--port", str(port)]
    with _serving(argv, scratch, port, 120):
        yield port


def run_block(block: Block, scratch: Path, port: int) -> str:
    if block.mode == "serves":
        with _serving(["bash", "-c", _script(block, port)], scratch, port, 180):
            return ""
    found = subprocess.run(
        ["bash", "-c", _script(block, port)],
        check=False,
        cwd=scratch,
        env=_env(port),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert found.returncode == 0, f"{block} exited {found.returncode}:\n{found.stderr[-3000:]}"
    return found.stdout + found.stderr


@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.doc.endswith(d.name) for b in ALL)])
def test_the_commands_in_each_doc_run(
    doc: Path, scratch: Path, request: pytest.FixtureRequest
) -> None:
    where = str(doc.relative_to(ROOT))
    ran = 0
    for block in (b for b in ALL if b.doc == where and not b.mode.startswith("needs=")):
        port = request.getfixturevalue("server") if block.mode == "server" else free_port()
        output = run_block(block, scratch, port)
        ran += 1
        if where == "README.md" and block.text.strip() == "make demo":
            _the_tour_shows_what_it_promises(output)
    assert ran or where != "README.md"


def _the_tour_shows_what_it_promises(output: str) -> None:
    """Each reason the README's sample output shows, the demo saw (the sample block follows
    `make demo` in the README)."""
    readme = (ROOT / "README.md").read_text()
    sample = readme[readme.index("make demo\n```\n```\n") :].split("```")[2]
    promised = [
        line.split("x-cascade-reason:")[1].strip()
        for line in sample.splitlines()
        if "x-cascade-reason:" in line
    ]
    seen = [
        line.split("x-cascade-reason:")[1].strip()
        for line in output.splitlines()
        if "x-cascade-reason:" in line
    ]
    assert len(promised) == 4 and len(seen) == 4, output
    for want, got in zip(promised, seen, strict=True):
        # the terms (accepted:small, low_confidence:small, ...), not the scores
        assert _terms(want) == _terms(got), (want, got)


def _terms(reason: str) -> list[str]:
    return [part.strip().split(" ")[0] for part in reason.split(";")]
