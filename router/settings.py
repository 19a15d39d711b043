"""Process settings: the environment, then command-line flags (the policy holds the rest).

Each setting is a typed, documented field naming its environment variable; a bad value is
refused at start-up with the variable's name (`CASCADE_LEDGER_QUEUE: Input should be a
valid integer`), never half-applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


def _env(name: str, description: str) -> Any:
    return {"env": name, "description": description}


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each variable and what is wrong."""


class Settings(BaseModel):
    """What a serving process needs before it reads its policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_path: Path = Field(
        Path("policies/default.yaml"),
        json_schema_extra=_env("CASCADE_POLICY", "The policy file to serve."),
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65_535)
    workers_replaced: int = 0  # set by the supervisor of --workers (router/process/supervisor.py)
    # set by the supervisor of --workers with a SQLite ledger: the node's writer
    ledger_writer_socket: Path | None = None
    # set by the supervisor of --workers: where each worker serves its own metrics, so one
    # scrape covers them all (router.server.siblings.py)
    metrics_folder: Path | None = None
    keys_path: Path | None = Field(
        None,
        json_schema_extra=_env(
            "CASCADE_KEYS",
            "Keys file (`cascade keys create`); turns auth on. Wins over the "
            "policy's auth.keys_file.",
        ),
    )
    allow_unauthenticated: bool = Field(
        False,
        json_schema_extra=_env(
            "CASCADE_ALLOW_UNAUTHENTICATED",
            "Serve with no keys configured on an address other than loopback (logged as a "
            "warning). Same as `cascade serve --allow-unauthenticated`.",
        ),
    )
    ledger_url: str = Field(
        "sqlite:///var/ledger.db",
        json_schema_extra=_env("CASCADE_LEDGER", "Where decision records go (docs/ledger.md)."),
    )
    redis_url: str | None = Field(
        None,
        json_schema_extra=_env(
            "CASCADE_REDIS_URL", "Redis for `CASCADE_LEDGER=redis` and `budgets.store: redis`."
        ),
    )
    cache: str | None = Field(
        None,
        pattern=r"^(off|memory|(redis|rediss|unix)://.+)$",
        json_schema_extra=_env(
            "CASCADE_CACHE",
            "`memory` or `redis://...`: the response cache for every route the policy does "
            "not configure otherwise (docs/cache.md); `off`.",
        ),
    )
    spool_folder: Path = Field(
        Path("var/spool"),
        json_schema_extra=_env("CASCADE_LEDGER_SPOOL", "Local spool while the sink is down."),
    )
    ledger_queue: int = Field(
        10_000,
        ge=1,
        json_schema_extra=_env("CASCADE_LEDGER_QUEUE", "Records held in memory at most."),
    )
    ledger_batch: int = Field(
        500, ge=1, json_schema_extra=_env("CASCADE_LEDGER_BATCH", "Records per sink write.")
    )
    feedback_recent: int = Field(
        100_000,
        ge=0,
        le=10_000_000,
        json_schema_extra=_env(
            "CASCADE_FEEDBACK_RECENT",
            "Recent requests whose owner POST /v1/feedback finds in memory (about 150 bytes "
            "each) before asking the ledger.",
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", json_schema_extra=_env("CASCADE_LOG_LEVEL", "Log level of the JSON logs.")
    )
    header_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        json_schema_extra=_env(
            "CASCADE_HEADER_TIMEOUT_S",
            "A connection's request line and headers must arrive within this (slow senders "
            "are closed); an idle keep-alive connection is closed after it too.",
        ),
    )
    intake_per_team: int = Field(
        2,
        ge=1,
        le=10_000,
        json_schema_extra=_env(
            "CASCADE_INTAKE_PER_TEAM",
            "Requests of one team read, parsed and validated at once (the CPU-heavy steps of "
            "a request); its others wait their turn, so one team's flood of large bodies "
            "cannot take the event loop from the other teams.",
        ),
    )
    intake_pass_budget_s: float = Field(
        0.0005,
        gt=0,
        le=1,
        json_schema_extra=_env(
            "CASCADE_INTAKE_PASS_BUDGET_S",
            "While another team is asking, the time one team's requests may take of a pass "
            "of the event loop; its next steps wait for the next passes, in order, so another "
            "team's request waits behind about this much of each team at each of its steps, "
            "whatever their load (a team alone is never slowed).",
        ),
    )
    intake_share: float = Field(
        0.5,
        gt=0,
        le=1,
        json_schema_extra=_env(
            "CASCADE_INTAKE_SHARE",
            "The share of the event loop one team's parsing and validating may take while "
            "another team is asking: past it, the team's next request waits its turn (a team "
            "alone is never slowed).",
        ),
    )
    offload_bytes: int = Field(
        65_536,
        ge=0,
        json_schema_extra=_env(
            "CASCADE_OFFLOAD_BYTES",
            "While another team is asking, a request body of at least this many bytes is "
            "parsed and validated first in a worker process that runs only when the serving "
            "loop does not want the CPU, so that it never holds the event loop for long "
            "(router/server/offload.py; the worker, ~50 MB, starts with a server that tells "
            "teams apart); 0: no worker.",
        ),
    )
    offload_objects: int = Field(
        1_000,
        ge=0,
        json_schema_extra=_env(
            "CASCADE_OFFLOAD_OBJECTS",
            "While another team is asking, a smaller body that holds at least this many JSON "
            "objects and arrays goes to the same worker (what parsing costs, and what the "
            "garbage collector walks, grows with them, not with bytes); 0: by bytes alone.",
        ),
    )
    loop_lag_warn_s: float = Field(
        0.1,
        gt=0,
        le=60,
        json_schema_extra=_env(
            "CASCADE_LOOP_LAG_WARN_S",
            "Log `event_loop_held` when the event loop was held longer than this "
            "(cascade_event_loop_lag_seconds measures it always).",
        ),
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        json_schema_extra=_env(
            "CASCADE_BODY_TIMEOUT_S", "A request body must arrive within this: else 408."
        ),
    )
    max_connections_per_ip: int = Field(
        256,
        ge=0,
        json_schema_extra=_env(
            "CASCADE_MAX_CONNECTIONS_PER_IP",
            "Open connections from one client address at most (0: no limit); more are closed.",
        ),
    )
    policy_poll_s: float = Field(
        1.0,
        gt=0,
        json_schema_extra=_env("CASCADE_POLICY_POLL_S", "Seconds between policy file checks."),
    )

    @property
    def cache_store(self) -> Literal["off", "memory", "redis"] | None:
        """What CASCADE_CACHE asks for (None: unset)."""
        if self.cache is None:
            return None
        return "off" if self.cache == "off" else "memory" if self.cache == "memory" else "redis"

    @property
    def cache_redis_url(self) -> str | None:
        """Redis for the cache: CASCADE_CACHE's own URL, else CASCADE_REDIS_URL."""
        return self.cache if self.cache_store == "redis" else self.redis_url

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable -> field name."""
        found = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and isinstance(env := extra.get("env"), str):
                found[env] = name
        return found

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Environment first, then explicit overrides (CLI flags) that are not None."""
        environ = os.environ if environ is None else environ
        variables = cls.variables()
        values: dict[str, object] = {
            field: environ[env] for env, field in variables.items() if environ.get(env)
        }
        if isinstance(level := values.get("log_level"), str):
            values["log_level"] = level.lower()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            names = {field: env for env, field in variables.items()}
            problems = [
                f"{names.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else 'settings'}: "
                f"{e['msg']}"
                for e in exc.errors()
            ]
            raise SettingsError("; ".join(problems)) from None
