"""Memory of a serving process on the shipped default policy (local tier, pre-router and
acceptance model loaded), after one answered request; and what it imported.

    python bench/memory.py

Target: VmRSS <= 250 MB. The GGUF is mmap'd: its pages (RssFile) are file-backed and
shared with every other process or worker that maps the same file.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from bench.common import WORK, append_results, rss_mb
from tests.support.processes import start_cascade

QUESTION = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


def heavy_modules(pid: int) -> list[str]:
    """Shared objects of scikit-learn or scipy mapped by the process (their import loads
    compiled extensions, so a mapping means the package was imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted(
        {name for name in ("sklearn", "scipy", "litellm") if f"/site-packages/{name}/" in maps}
    )


def ask(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(QUESTION).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200


def policy_version(url: str) -> str:
    with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
        return str(json.loads(response.read())["policy"])


def main() -> None:
    WORK.mkdir(exist_ok=True)
    policy = WORK / "memory-policy.yaml"
    text = Path("policies/default.yaml").read_text()
    policy.write_text(text)
    server = start_cascade(
        policy,
        "none",
        WORK / "memory.log",
        env={"CASCADE_LARGE_API_BASE": "", "CASCADE_POLICY_POLL_S": "0.2"},
    )
    try:
        idle = rss_mb(server.process.pid)
        ask(server.url)
        answered = rss_mb(server.process.pid)
        heavy = heavy_modules(server.process.pid)
        # A reload that changes the local tier loads a new model context before the old
        # one is released (requests in flight finish on the old one): the peak.
        before = policy_version(server.url)
        policy.write_text(text.replace("n_ctx: 2048", "n_ctx: 2040"))
        deadline = time.monotonic() + 60
        while policy_version(server.url) == before:
            assert time.monotonic() < deadline, "the policy was not reloaded"
            time.sleep(0.2)
        ask(server.url)
        time.sleep(1)
        reloaded = rss_mb(server.process.pid)
    finally:
        server.stop()
    print(f"idle {idle}, after one request {answered}, heavy modules {heavy}")
    append_results(
        "(c') Serving-process memory, default policy",
        ["when", "VmRSS MiB", "RssAnon MiB", "RssFile MiB (mmap'd, shared)", "VmHWM MiB"],
        [
            [
                label,
                f"**{m['VmRSS']:.0f}**" if label.startswith("after") else f"{m['VmRSS']:.0f}",
                f"{m['RssAnon']:.0f}",
                f"{m['RssFile']:.0f}",
                f"{m['VmHWM']:.0f}",
            ]
            for label, m in (
                ("idle, after start", idle),
                ("after one answered request", answered),
                ("after a reload that replaced the local tier", reloaded),
            )
        ],
        notes="`cascade serve --policy policies/default.yaml` (llama.cpp tier, pre-router and "
        "acceptance model; no large tier configured), ledger off. Target: VmRSS <= 250 MB. "
        "VmHWM after the reload is the reload's peak (two local contexts for a moment). "
        f"scikit-learn / scipy / litellm mapped into the process: {', '.join(heavy) or 'none'}.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
