"""A cascade server under test: its policy text, its ledger, the records it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.ledger import LedgerError, open_reader, parse_ledger_url
from tests.support.processes import ServerProcess


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


def audit_report(ledger: str, *by: str) -> dict[str, Any]:
    """`cascade audit --ledger LEDGER --by ... --format json` as a user runs it, parsed."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "router", "audit", "--ledger", ledger),
            *("--by", ",".join(by), "--format", "json"),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(done.stdout))


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
