"""What every tier of a policy has, whatever runs it: the base of each backend's own spec.

A backend module defines its tier spec as a subclass (with `type: Literal["its-tag"]`) next
to the backend that serves it; the registry (registry.py) collects them into the policy's
tagged union.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictSpec(BaseModel):
    """Unknown keys are errors; specs are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceSpec(StrictSpec):
    """USD per one million tokens, plus (for compute you pay by time) USD per second."""

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)
    cached_input_per_1m: float | None = Field(
        None,
        ge=0,
        description="USD per 1M prompt tokens the provider read from its cache (its usage's "
        "cached_tokens); empty means input_per_1m.",
    )
    per_second: float = Field(
        0.0, ge=0, description="USD per second of an attempt's latency (e.g. a local GPU's cost)."
    )

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float = 0.0,
        *,
        cached_tokens: int = 0,
    ) -> float:
        """What a call costs. Reasoning tokens are part of completion_tokens, and n > 1
        choices of the upstream's usage, so both are billed as the provider bills them."""
        cached = min(cached_tokens, prompt_tokens)
        cached_price = (
            self.input_per_1m if self.cached_input_per_1m is None else (self.cached_input_per_1m)
        )
        tokens = (
            (prompt_tokens - cached) * self.input_per_1m
            + cached * cached_price
            + completion_tokens * self.output_per_1m
        )
        return tokens / 1e6 + seconds * self.per_second


class RetrySpec(StrictSpec):
    max: int = Field(1, ge=0, le=5, description="Retries of one call at most.")
    budget: float = Field(
        0.2, ge=0, le=1, description="Retries at most this share of the tier's recent calls."
    )
    min_budget: int = Field(3, ge=0, description="Retries allowed in a window whatever the share.")
    backoff_ms: float = Field(
        25.0, ge=0, le=10_000, description="Wait before a retry (with jitter: 50-150% of it)."
    )
    window_s: float = Field(10.0, gt=0, le=3600)
    statuses: list[int] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504],
        description="Upstream statuses retried before the first byte (connection failures "
        "always are); a 429 only with a Retry-After within retry_after_max_s.",
    )
    retry_after_max_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="An upstream's Retry-After (or retry-after-ms) up to this is waited out and "
        "the call retried; a longer one fails over at once.",
    )

    @field_validator("statuses")
    @classmethod
    def _error_statuses(cls, value: list[int]) -> list[int]:
        if any(not 400 <= status <= 599 for status in value):
            raise ValueError("retried statuses are 4xx or 5xx")
        return value


class BreakerSpec(StrictSpec):
    consecutive_failures: int = Field(5, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_calls: int = Field(20, ge=1, description="Calls in the window before the rate counts.")
    window_s: float = Field(30.0, gt=0, le=3600)
    cooldown_s: float = Field(10.0, gt=0, le=3600)
    half_open_probes: int = Field(1, ge=1, le=100)


class TierSpecBase(StrictSpec):
    """Settings every tier type has. Subclasses narrow `type` to their tag."""

    type: str
    description: str = ""
    price: PriceSpec = PriceSpec()
    price_from_litellm: bool = Field(
        False, description="Take `price` from litellm's bundled model_cost map for `model`."
    )
    max_concurrency: int = Field(64, ge=1, le=4096)
    max_queue: int = Field(256, ge=0, le=100_000)
    context_window: int | None = Field(
        None,
        ge=1,
        description="Tokens the model takes at most, prompt and answer together: a request "
        "that cannot fit skips this tier before it is called (for the next that can).",
    )
    continuation: Literal["regenerate", "prefill", "none"] = Field(
        "regenerate",
        description="How this tier continues another tier's stream that broke mid-answer "
        "(router/repair.py): `prefill` (it continues the assistant message sent so far), "
        "`regenerate` (it answers again at temperature 0 and what was sent is skipped when "
        "the new answer begins with it), `none`.",
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Used when the client sends no temperature."
    )
    features: list[str] | None = Field(
        None,
        description="Request features this tier serves (tools, json_object, json_schema, "
        "logprobs, image, audio, file, n, logit_bias, penalties, audio_output, prediction, "
        "web_search); default: its type's. A request using one it lacks skips the tier.",
    )

    @property
    def finishes_when_left(self) -> bool:
        """Whether a whole answer its client left is finished anyway (remote tiers may)."""
        return False

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            from router.backends.base import REQUEST_FEATURES

            unknown = sorted(set(value) - set(REQUEST_FEATURES))
            if unknown:
                raise ValueError(f"unknown features {unknown} (one of {sorted(REQUEST_FEATURES)})")
        return value

    def serves(self, default: frozenset[str]) -> frozenset[str]:
        """The request features this tier serves: its `features`, else its type's `default`."""
        return frozenset(self.features) if self.features is not None else frozenset(default)

    @property
    def served_model(self) -> str:
        """The model name this tier answers as (records, explain, /v1/models)."""
        raise NotImplementedError

    @property
    def configured(self) -> bool:
        """False when the tier lacks what it needs to run (it then degrades, not fails)."""
        return True


class RemoteTierSpec(TierSpecBase):
    """A tier reached over the network by model name, behind retries and a breaker."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key)."
    )
    timeout_s: float = Field(60.0, gt=0, le=3600, description="A whole attempt, at most.")
    connect_timeout_s: float = Field(5.0, gt=0, le=600)
    retries: RetrySpec = RetrySpec()
    breaker: BreakerSpec = BreakerSpec()
    first_byte_timeout_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Response headers within this (a stream's first byte; a whole answer "
        "when not streamed); default: `timeout_s`.",
    )
    first_token_timeout_s: float | None = Field(
        15.0,
        gt=0,
        le=3600,
        description="A stream's first event within this, else it fails over: a stalled "
        "provider costs 15 s, not the whole timeout (a prompt your provider takes longer to "
        "read needs more); none: first_byte_timeout_s.",
    )
    idle_timeout_s: float | None = Field(
        10.0,
        gt=0,
        le=3600,
        description="At most this between a stream's events: a stream that stalls is cut in "
        "seconds, while a healthy long one is never cut by a total (timeout_s bounds whole "
        "answers, and each wait of a stream).",
    )
    on_client_gone: Literal["cancel", "finish"] = Field(
        "cancel",
        description="A whole (not streamed) answer whose client left: `cancel` the call (its "
        "cost estimated from the time it ran) or `finish` it, up to timeout_s, for the "
        "provider's exact usage (the record waits for it).",
    )

    @property
    def finishes_when_left(self) -> bool:
        return self.on_client_gone == "finish"

    @field_validator("api_base")
    @classmethod
    def _normalise_base(cls, value: str | None) -> str | None:
        return value.rstrip("/") or None if value else None

    @property
    def served_model(self) -> str:
        return self.model

    @property
    def stream_first_s(self) -> float:
        """How long a stream's first event may take: the tightest of its limits."""
        limits = (self.first_byte_timeout_s, self.first_token_timeout_s, self.timeout_s)
        return min(limit for limit in limits if limit is not None)

    @property
    def stream_idle_s(self) -> float:
        """How long a stream may go without an event after its first."""
        return min(self.idle_timeout_s or self.timeout_s, self.timeout_s)

    @property
    def first_byte_s(self) -> float | None:
        """The first-byte timeout when it is tighter than the total one."""
        if self.first_byte_timeout_s is None or self.first_byte_timeout_s >= self.timeout_s:
            return None
        return self.first_byte_timeout_s
