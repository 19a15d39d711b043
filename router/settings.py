"""Process settings from the environment and the command line (the policy holds the rest)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """What a serving process needs before it reads its policy."""

    policy_path: Path = Path("policies/default.yaml")
    host: str = "127.0.0.1"
    port: int = 8080
    ledger_url: str = "sqlite:///var/ledger.db"
    redis_url: str | None = None
    spool_folder: Path = Path("var/spool")
    ledger_queue: int = 10_000
    ledger_batch: int = 500
    log_level: str = "info"
    policy_poll_s: float = 1.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Environment first, then explicit overrides (CLI flags) that are not None."""
        values: dict[str, object] = {}
        if policy := os.environ.get("CASCADE_POLICY"):
            values["policy_path"] = Path(policy)
        if ledger := os.environ.get("CASCADE_LEDGER"):
            values["ledger_url"] = ledger
        if redis_url := os.environ.get("CASCADE_REDIS_URL"):
            values["redis_url"] = redis_url
        if spool := os.environ.get("CASCADE_LEDGER_SPOOL"):
            values["spool_folder"] = Path(spool)
        if queue := os.environ.get("CASCADE_LEDGER_QUEUE"):
            values["ledger_queue"] = int(queue)
        if batch := os.environ.get("CASCADE_LEDGER_BATCH"):
            values["ledger_batch"] = int(batch)
        if level := os.environ.get("CASCADE_LOG_LEVEL"):
            values["log_level"] = level.lower()
        if poll := os.environ.get("CASCADE_POLICY_POLL_S"):
            values["policy_poll_s"] = float(poll)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
