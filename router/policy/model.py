"""Pydantic v2 model of a policy file: strict (unknown keys are errors), tiers tagged by `type`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import AwareDatetime, Field, field_validator, model_validator

from router.backends.base import DEFAULT_FALLBACK_ON, FailureClass
from router.backends.registry import TYPES
from router.backends.spec import PriceSpec, StrictSpec, TierSpecBase
from router.confidence import METHODS

__all__ = ["PriceSpec", "TierSpec"]


_Strict = StrictSpec

if TYPE_CHECKING:
    TierSpec: TypeAlias = TierSpecBase
else:  # the tagged union of every registered tier type (router/backends/registry.py)
    TierSpec = Annotated[
        Union[tuple(backend.spec for backend in TYPES.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


class AcceptanceSpec(_Strict):
    """When a tier's answer is kept rather than escalated: its confidence >= `threshold`."""

    method: str = Field(
        "mean_prob",
        description="How confidence is scored (router/confidence.py registers the methods).",
        json_schema_extra={"enum": list[Any](sorted(METHODS))},
    )
    threshold: float = Field(ge=0, le=1)
    model: str | None = Field(
        None,
        description="With `method: learned`: an acceptance artifact, a bundled name "
        "(`acceptance`) or a .skops path (relative paths from the policy's folder).",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(
                f"unknown acceptance method '{value}' (one of {', '.join(sorted(METHODS))})"
            )
        return value

    @model_validator(mode="after")
    def _model_when_needed(self) -> AcceptanceSpec:
        if METHODS[self.method].needs_model and not self.model:
            raise ValueError(
                f"method '{self.method}' needs `model` (e.g. the bundled 'acceptance')"
            )
        if not METHODS[self.method].needs_model and self.model is not None:
            takers = " or ".join(f"'{name}'" for name, m in METHODS.items() if m.needs_model)
            raise ValueError(f"`model` is only used with method {takers}, not '{self.method}'")
        return self


class ClassifierSpec(_Strict):
    """A pre-router: P(the first step suffices | prompt), scored before any model runs."""

    model: str = Field(
        description="A router artifact: a bundled name (`prerouter`) or a .skops path "
        "(relative paths from the policy's folder)."
    )
    threshold: float = Field(
        ge=0,
        le=1,
        description="Below it the route's first step is skipped (it still runs, last, if "
        "every later step fails).",
    )


class CascadeStep(_Strict):
    tier: str
    acceptance: AcceptanceSpec | None = Field(
        None, description="Omit on the last step: its answer is always kept."
    )


CacheStore = Literal["off", "memory", "redis"]


def _off(value: object) -> object:
    """YAML reads a bare `off` as false: it means the cache is off."""
    return "off" if value is False else value


class RouteCacheSpec(_Strict):
    """This route's answers in the exact-match response cache (router/cache/)."""

    store: CacheStore = Field(
        description="`memory`: this process's bounded LRU; `redis`: shared by every worker "
        "and replica (CASCADE_CACHE=redis://..., else CASCADE_REDIS_URL); `off`."
    )
    ttl_s: float | None = Field(
        None, gt=0, le=30 * 86_400, description="Seconds an answer is served; default cache.ttl_s."
    )

    _store_off = field_validator("store", mode="before")(_off)


class AutotuneSpec(_Strict):
    """Re-tune the acceptance threshold of the route's local step from its shadow checks, as
    `cascade classify calibrate --from-ledger` would, within bounds (router/shadow/autotune.py).
    """

    min_threshold: float = Field(ge=0, le=1, description="The lowest threshold it may set.")
    max_threshold: float = Field(ge=0, le=1, description="The highest threshold it may set.")
    min_checks: int = Field(
        200,
        ge=20,
        le=100_000,
        description="Conclusive checks (accepted and escalated) needed before the first change.",
    )
    window: int = Field(
        2000,
        ge=20,
        le=100_000,  # a re-tuning sorts it on the event loop: some 20-40 ms at 100,000
        description="It tunes on the latest this many checks.",
    )
    every_checks: int = Field(
        50, ge=1, le=1_000_000, description="New conclusive checks between two re-tunings."
    )
    max_step: float = Field(
        0.05, gt=0, le=1, description="The most one change moves the threshold."
    )
    feedback: bool = Field(
        False,
        description="Also tune on applications' feedback (POST /v1/feedback) on the step's "
        "served answers, good as agreeing. It judges only answers that were kept, so it can "
        "raise the threshold, never show that a lower one would do.",
    )
    store: Literal["memory", "redis"] = Field(
        "memory",
        description="memory: each process tunes on the checks it ran, from the policy's "
        "threshold at each start; redis: one window and one threshold for every worker and "
        "replica (CASCADE_REDIS_URL), kept across restarts.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutotuneSpec:
        if self.min_threshold > self.max_threshold:
            raise ValueError("min_threshold must not exceed max_threshold")
        if self.min_checks > self.window:
            raise ValueError("min_checks must not exceed window")
        return self


class ShadowSpec(_Strict):
    """Shadow checks: a sample of the route's accepted local answers is also sent to a
    reference tier off the request path, and the two answers compared (router/shadow/)."""

    rate: float = Field(
        ge=0, le=1, description="Share of accepted local answers checked (0.05: one in 20)."
    )
    usd_per_day: float = Field(
        gt=0,
        description="The checks' spend (reference and judge calls) per UTC day at most, "
        "per process or shared (`cap_store`).",
    )
    cap_store: Literal["memory", "redis"] = Field(
        "memory",
        description="memory: each process keeps its own day (N workers or replicas may spend "
        "N times usd_per_day); redis: one day shared through CASCADE_REDIS_URL.",
    )
    reference_tier: str | None = Field(
        None, description="The tier whose answer counts as right; default the route's reference."
    )
    judge: Literal["exact", "normalized", "json", "llm"] = Field(
        "normalized",
        description="exact: the same text; normalized: by what the reference is (an option "
        "letter, a number, else the text evened out); json: equal JSON values; llm: "
        "`judge_tier` asked, with a fixed versioned prompt, whether the answers agree.",
    )
    judge_tier: str | None = Field(
        None, description="With judge llm: the tier that judges (its calls count in the cap)."
    )
    target_quality: float | None = Field(
        None, ge=0, le=1, description="`cascade audit` flags the route when agreement is below."
    )
    queue: int = Field(
        64, ge=1, le=10_000, description="Checks waiting at most; more are dropped (counted)."
    )

    autotune: AutotuneSpec | None = Field(
        None,
        description="Re-tune the local step's threshold toward `target_quality` from these "
        "checks, within bounds; each change is a ledger record (`kind: tune`).",
    )

    @model_validator(mode="after")
    def _llm_judge_has_a_tier(self) -> ShadowSpec:
        if (self.judge == "llm") != (self.judge_tier is not None):
            raise ValueError("judge llm needs judge_tier (and judge_tier needs judge llm)")
        if self.autotune is not None and self.target_quality is None:
            raise ValueError("autotune needs target_quality (what it tunes toward)")
        return self

    prerouter_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests the pre-router sent past the local tier that the local "
        "tier answers in the background, when its queue is empty, to label the pre-router "
        "(uses the local tier's capacity: a request arriving meanwhile waits for it).",
    )


class RouteSpec(_Strict):
    description: str = ""
    cache: RouteCacheSpec | None = Field(
        None, description="Omitted: the policy's `cache.store`, else CASCADE_CACHE, else off."
    )
    classifier: ClassifierSpec | None = None
    cascade: list[CascadeStep] = Field(min_length=1)
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tier -> tiers tried in order when it fails (error, timeout, shed); a "
        "fallback answers in its place, judged by the same acceptance.",
    )
    stream: Literal["verify", "live"] = Field(
        "verify",
        description="Streaming requests: 'verify' generates an answer that may be rejected in "
        "full before streaming it; 'live' streams the first step live and keeps it.",
    )
    fallback_on: list[FailureClass] = Field(
        default_factory=lambda: list(DEFAULT_FALLBACK_ON),
        description="The failure classes on which a tier's fallbacks and the route's next "
        "steps are tried: unavailable (5xx, reset, unreachable, breaker open, queue full, an "
        "upstream 401/403/404), timeout, rate_limited (429), context_length_exceeded, "
        "content_filter (a provider's content-policy refusal), invalid_request (another "
        "400/413/422). Any other failure is the client's answer at once, with the provider's "
        "status, code and message.",
    )
    route_around_refusals: bool = Field(
        False,
        description="Shorthand for adding content_filter to fallback_on: a provider's "
        "content-policy refusal is routed to the next tier instead of being the client's "
        "answer.",
    )

    @property
    def falls_over_on(self) -> frozenset[FailureClass]:
        """fallback_on, with route_around_refusals's content_filter."""
        extra: set[FailureClass] = {"content_filter"} if self.route_around_refusals else set()
        return frozenset(self.fallback_on) | extra

    reference_tier: str | None = Field(
        None, description="Tier used for the counterfactual cost; default the last step."
    )
    shadow: ShadowSpec | None = Field(
        None, description="Check a sample of accepted local answers against a reference tier."
    )

    @property
    def reference(self) -> str:
        return self.reference_tier or self.cascade[-1].tier

    @model_validator(mode="after")
    def _classifier_has_a_step_to_skip_to(self) -> RouteSpec:
        if self.classifier is not None and len(self.cascade) < 2:
            raise ValueError("a route with a classifier needs at least two cascade steps")
        tunes = self.shadow is not None and self.shadow.autotune is not None
        if tunes and not any(step.acceptance is not None for step in self.cascade[:-1]):
            raise ValueError("shadow.autotune needs a step with an acceptance threshold")
        return self


class LimitsSpec(_Strict):
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1024 * 1024)
    max_messages: int = Field(
        2048, ge=1, le=100_000, description="Messages in one chat request at most (400 above)."
    )
    max_prompt_tokens: int = Field(4096, ge=1)
    max_output_tokens: int = Field(1024, ge=1)
    default_max_tokens: int = Field(256, ge=1)
    max_json_depth: int = Field(
        128, ge=8, le=200, description="Levels a request body's JSON may nest (400 beyond)."
    )
    # a client's JSON Schema (response_format, tools' parameters are the provider's to check)
    max_schema_bytes: int = Field(
        65_536, ge=256, le=4 * 1024 * 1024, description="A response_format schema, as JSON."
    )
    max_schema_depth: int = Field(
        32, ge=2, le=200, description="Nesting of a response_format schema's objects and lists."
    )
    max_schema_enum_values: int = Field(
        1000, ge=1, le=100_000, description="enum values in a schema, all its enums together."
    )
    max_schema_properties: int = Field(
        5000, ge=1, le=100_000, description="properties in a schema, all its objects together."
    )
    max_feedback_items: int = Field(
        100, ge=1, le=10_000, description="Items in one POST /v1/feedback batch (400 above)."
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> LimitsSpec:
        if self.default_max_tokens > self.max_output_tokens:
            raise ValueError("default_max_tokens must not exceed max_output_tokens")
        return self


DEFAULT_TEAM = "default"  # the team of a request whose key no team lists


class SpendLimits(_Strict):
    """What a team may spend and send. Budgets roll at UTC day and month boundaries; rates
    are per UTC minute."""

    usd_per_day: float | None = Field(None, gt=0)
    usd_per_month: float | None = Field(None, gt=0)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Prompt plus completion tokens (reserved at max_tokens)."
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="A team's: calls in progress at once on any one remote tier; more wait "
        "their turn (the tier's slots are shared fairly among teams either way). A key's: its "
        "requests in progress at once (per process); more wait their turn before they are read.",
    )

    @property
    def limited(self) -> bool:
        return any(
            value is not None
            for value in (
                self.usd_per_day,
                self.usd_per_month,
                self.requests_per_minute,
                self.tokens_per_minute,
            )
        )


class KeySpec(_Strict):
    """An API key of a team, by its SHA-256 (the key itself never appears in a policy).

    `printf %s "$KEY" | sha256sum` gives the hash.
    """

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    role: Literal["user", "admin"] = Field(
        "user", description="admin: /admin/* and every team's spend."
    )
    models: list[str] | None = Field(
        None, description="Routes and tiers this key may ask for; absent: any."
    )
    expires_at: AwareDatetime | None = None
    limits: SpendLimits | None = Field(None, description="This key's own budget and rates.")


class BudgetRouting(_Strict):
    """How a team's routing changes as it spends its budget (the larger share of its day
    and month budgets)."""

    degrade_at: float | None = Field(
        None,
        gt=0,
        le=1,
        description="From this share spent: no escalation beyond local tiers (answers "
        "marked degraded), or `route` instead when set.",
    )
    route: str | None = Field(None, description="The cheaper route to use from `degrade_at`.")
    at_limit: Literal["refuse", "local"] = Field(
        "refuse",
        description="At the budget: 429 with Retry-After (refuse), or local tiers only (local).",
    )


class TeamSpec(_Strict):
    description: str = ""
    keys: list[KeySpec] = Field(default_factory=list)
    limits: SpendLimits = SpendLimits()
    budget_routing: BudgetRouting = BudgetRouting()


class LeaseSpec(_Strict):
    """Per-process leases on Redis counters (router/budgets/leases.py): a process takes a
    slice of a scope's budget and rate window in one call and admits from it locally."""

    enabled: bool = Field(
        True, description="Admit from leases (false: two Redis calls on every request)."
    )
    ttl_s: float = Field(
        15,
        gt=0,
        le=3600,
        description="A dead process's lease (its unused slice and its requests' claims) is "
        "released this long after its last renewal.",
    )
    flush_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="How often a process sends what it settled and renews its leases; spend "
        "seen by other replicas lags by at most this.",
    )
    fraction: float = Field(
        0.125,
        gt=0,
        le=1,
        description="A slice is at most this share of what is left under a cap (so slices "
        "shrink near it, and requests go to Redis one by one there).",
    )
    max_requests: int = Field(
        256,
        ge=1,
        le=100_000,
        description="A slice holds at most this many requests (and this many times the last "
        "request's cost and tokens).",
    )


class BudgetsSpec(_Strict):
    """Where spend and rate counters live: in this process, or in Redis (shared by every
    worker and replica; CASCADE_REDIS_URL)."""

    store: Literal["memory", "redis"] = "memory"
    on_store_error: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed",
        description="Redis unreachable: refuse with 503 (fail_closed), or admit within a "
        "counter of this process (fail_open).",
    )
    rate_window_s: int = Field(
        60,
        ge=1,
        le=3600,
        description="The window requests_per_minute and tokens_per_minute count in (60: per "
        "minute, as named; shorter for tests).",
    )
    reservation_ttl_s: float = Field(
        600,
        gt=0,
        le=86_400,
        description="A reservation a crashed process never settled is released after this.",
    )
    leases: LeaseSpec = LeaseSpec()


class TokenRange(_Strict):
    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TokenRange:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def contains(self, value: int) -> bool:
        return self.min <= value and (self.max is None or value <= self.max)


class ScoreRange(_Strict):
    """A pre-router's score of the prompt within [min, max] (both inclusive)."""

    model: str = Field(
        description="A router artifact: a bundled name (`prerouter`) or a .skops path "
        "(relative paths from the policy's folder)."
    )
    min: float = Field(0.0, ge=0, le=1)
    max: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


class MatchSpec(_Strict):
    """All given conditions must hold; a list matches when any of its items does."""

    teams: list[str] | None = None
    tags: list[str] | None = Field(
        None, description="Any of the key's tags or the request's x-cascade-tags header."
    )
    models: list[str] | None = Field(None, description="The route the client asked for.")
    prompt_tokens: TokenRange | None = None
    classifier: ScoreRange | None = Field(
        None, description="The prompt's score by a router artifact is within [min, max]."
    )
    features: list[str] | None = Field(
        None,
        description="Any of these request features is used (tools, json_schema, image, ...): "
        "e.g. every request with tools goes to route `agents`.",
    )


class OverridesSpec(_Strict):
    acceptance: dict[str, AcceptanceSpec] = Field(
        default_factory=dict, description="Tier name -> acceptance to use instead."
    )


class RuleSpec(_Strict):
    """When `match` holds, serve with `route` and/or `overrides`; the first match wins."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str = ""
    match: MatchSpec = MatchSpec()
    route: str | None = None
    overrides: OverridesSpec = OverridesSpec()

    @model_validator(mode="after")
    def _does_something(self) -> RuleSpec:
        if self.route is None and not self.overrides.acceptance:
            raise ValueError("a rule needs a route or overrides")
        return self


class LedgerSpec(_Strict):
    """What decision records may hold beyond the routing facts."""

    log_prompts: bool = Field(
        False, description="Store the prompt text in each record (secrets redacted, capped)."
    )
    max_prompt_chars: int = Field(2000, ge=1, le=1_000_000)
    rejections: Literal["aggregate", "full"] = Field(
        "aggregate",
        description="Requests refused because every tier is saturated: counted and logged "
        "once a second per team, route and reason (`aggregate`), or one record each (`full`).",
    )


class CacheSpec(_Strict):
    """The exact-match response cache: a repeated request answered without any tier."""

    store: CacheStore | None = Field(
        None,
        description="For routes (and tiers asked for by name) that set no `cache`; omitted: "
        "CASCADE_CACHE decides (`memory` or `redis://...`), else off.",
    )
    ttl_s: float = Field(3600, gt=0, le=30 * 86_400)
    deterministic_only: bool = Field(
        True,
        description="Cache only requests whose answer is meant to repeat: temperature 0 or a "
        "seed. False: every request (a sampled answer is then served again as it was).",
    )
    shared_across_teams: bool = Field(
        False, description="One entry serves every team (else each team has its own)."
    )
    memory_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="The in-process cache's size bound (per worker)."
    )
    memory_max_entries: int = Field(10_000, ge=1)
    max_entry_bytes: int = Field(
        256 * 1024, ge=256, description="Larger answers are served but not cached."
    )
    redis_timeout_ms: float = Field(
        50, gt=0, le=10_000, description="A Redis cache call slower than this is a miss."
    )
    redis_retry_s: float = Field(
        5, ge=0, le=3600, description="After a Redis error the cache is skipped this long."
    )

    _store_off = field_validator("store", mode="before")(_off)


class AuthSpec(_Strict):
    """Who may call. Auth is on when any key is configured: a team's `keys` here, or a keys
    file (`keys_file`, or the CASCADE_KEYS environment variable, which wins)."""

    keys_file: str | None = Field(
        None,
        description="Keys file written by `cascade keys create` (hashes only), relative to "
        "this policy's folder; re-read when it changes.",
    )
    metrics: Literal["admin", "open"] = Field(
        "admin", description="With auth on, /metrics needs an admin key (admin) or not (open)."
    )


class Policy(_Strict):
    version: Literal[1] = 1
    description: str = ""
    limits: LimitsSpec = LimitsSpec()
    ledger: LedgerSpec = LedgerSpec()
    tiers: dict[str, TierSpec] = Field(min_length=1)
    routes: dict[str, RouteSpec] = Field(min_length=1)
    default_route: str | None = None
    teams: dict[str, TeamSpec] = Field(default_factory=dict)
    auth: AuthSpec = AuthSpec()
    budgets: BudgetsSpec = BudgetsSpec()
    cache: CacheSpec = CacheSpec()
    rules: list[RuleSpec] = Field(default_factory=list)
