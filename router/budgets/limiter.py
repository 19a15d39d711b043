"""Admission by budget and rate: what a team may still spend and send decides whether a
request runs, and how (`Admission`), before any tier is called; afterwards its actual cost
and tokens are settled.

A team's `limits` (policy `teams.T.limits`) are checked in one atomic reserve of the
request's maximum possible cost — every tier its plan may call, at prompt tokens (an upper
bound) plus max_tokens — so that concurrent requests can never together spend past a cap by
more than one request's maximum. Its `budget_routing` then shapes the plan: from
`degrade_at` of the budget spent, no escalation beyond local tiers (answers marked degraded)
or a cheaper route; at the budget, 429 or local tiers only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from router.budgets.store import (
    NANO,
    NO_LIMIT,
    Ask,
    Caps,
    Refusal,
    Standing,
    Store,
    StoreUnavailable,
    Windows,
)
from router.errors import APIError
from router.policy.model import Policy, SpendLimits
from router.routing import Plan

BudgetDecision = Literal["ok", "degraded", "rerouted", "local_only"]
_REFUSALS = {
    "requests": "requests per minute",
    "tokens": "tokens per minute",
    "usd_per_day": "daily budget",
    "usd_per_month": "monthly budget",
}


def max_cost_nano(policy: Policy, plan: Plan, prompt_tokens: int, output_tokens: int) -> int:
    """What a plan could cost at most: every tier it may call (fallbacks included), each at
    `prompt_tokens` in and `output_tokens` out (what a budget reserves)."""
    if plan.fallbacks:
        tiers = {name for step in plan.steps for name in plan.candidates(step.tier)}
    else:
        tiers = {step.tier for step in plan.steps}
    usd = sum(policy.tiers[name].price.cost(prompt_tokens, output_tokens) for name in tiers)
    return math.ceil(usd * NANO)


def caps_of(limits: SpendLimits) -> Caps:
    def nano(usd: float | None) -> int:
        return NO_LIMIT if usd is None else int(usd * NANO)

    return Caps(
        nano(limits.usd_per_day),
        nano(limits.usd_per_month),
        limits.requests_per_minute if limits.requests_per_minute is not None else NO_LIMIT,
        limits.tokens_per_minute if limits.tokens_per_minute is not None else NO_LIMIT,
    )


@dataclass(slots=True)
class Admission:
    """What the limiter decided for one request, and what it holds until settled."""

    team: str
    decision: BudgetDecision = "ok"
    share: float | None = None  # of the budget spent (the larger of day and month)
    remaining_usd: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    claims: list[Ask] = field(default_factory=list)  # held until settled: team's, key's
    windows: Windows | None = None

    def answer_headers(self) -> dict[str, str]:
        """The rate-limit headers, and what is left of the caller's own team's budget."""
        if self.remaining_usd is None:
            return self.headers
        return {**self.headers, "x-cascade-budget-remaining": f"{self.remaining_usd:.6f}"}

    def as_record(self) -> dict[str, object] | None:
        if self.share is None and self.decision == "ok":
            return None
        return {
            "decision": self.decision,
            "share": None if self.share is None else round(self.share, 6),
            "remaining_usd": None if self.remaining_usd is None else round(self.remaining_usd, 9),
        }


def _share(standing: Standing, caps: Caps) -> tuple[float | None, float | None]:
    """The larger share spent of the day and month budgets, and what is left of them once
    what requests in flight hold (this one's maximum included) is spent too."""
    share: float | None = None
    left: float | None = None
    if caps.nano_per_day != NO_LIMIT:
        share = standing.spent_day_nano / caps.nano_per_day
        left = max(caps.nano_per_day - standing.spent_day_nano - standing.reserved_nano, 0) / NANO
    if caps.nano_per_month != NO_LIMIT:
        spent = standing.spent_month_nano
        month_share = spent / caps.nano_per_month
        month_left = max(caps.nano_per_month - spent - standing.reserved_nano, 0) / NANO
        share = month_share if share is None else max(share, month_share)
        left = month_left if left is None else min(left, month_left)
    return share, left


def _exhausted(standing: Standing, caps: Caps) -> Refusal | None:
    """The budget already spent in full, if any."""
    if caps.nano_per_day != NO_LIMIT and standing.spent_day_nano >= caps.nano_per_day:
        return "usd_per_day"
    if caps.nano_per_month != NO_LIMIT and standing.spent_month_nano >= caps.nano_per_month:
        return "usd_per_month"
    return None


def _rate_headers(standing: Standing, caps: Caps, windows: Windows) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers (the SDKs and dashboards read them)."""
    headers = dict(_limit_headers(caps))
    if not headers:
        return headers
    reset = f"{math.ceil(windows.minute_reset_s)}s"
    if caps.requests_per_minute != NO_LIMIT:
        headers["x-ratelimit-remaining-requests"] = str(
            max(caps.requests_per_minute - standing.requests, 0)
        )
        headers["x-ratelimit-reset-requests"] = reset
    if caps.tokens_per_minute != NO_LIMIT:
        headers["x-ratelimit-remaining-tokens"] = str(
            max(caps.tokens_per_minute - standing.tokens, 0)
        )
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


@functools.lru_cache(maxsize=256)
def _limit_headers(caps: Caps) -> tuple[tuple[str, str], ...]:
    """The x-ratelimit-limit-* headers of a scope's caps (the same on every request)."""
    found = []
    if caps.requests_per_minute != NO_LIMIT:
        found.append(("x-ratelimit-limit-requests", str(caps.requests_per_minute)))
    if caps.tokens_per_minute != NO_LIMIT:
        found.append(("x-ratelimit-limit-tokens", str(caps.tokens_per_minute)))
    return tuple(found)


class Limiter:
    """Admits requests by their team's limits; settles them after."""

    def __init__(
        self,
        policy: Policy,
        store: Store,
        *,
        clock: Callable[[], float],
        on_error: Callable[[str], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_error = on_error
        self._ttl = policy.budgets.reservation_ttl_s
        self._window = policy.budgets.rate_window_s
        self._second, self._windows_now = -1, Windows.at(0, self._window)
        # every team the policy names has its spend counted, limits or not (the spend
        # endpoints show it); a team it does not name (`default` when auth is off) is not.
        # Worked out once per policy version, not per request
        self._teams = {
            name: (spec.limits, spec.budget_routing, caps_of(spec.limits))
            for name, spec in policy.teams.items()
        }

    def _windows(self) -> Windows:
        """The windows of this second, made once a second rather than on every request.
        Every window starts on a whole second, so which windows a request falls in is
        exact; the seconds until each resets are counted from the second's start (up to
        1 s more than the truth, which only the reset headers show)."""
        second = math.floor(self._clock())
        if second != self._second:
            self._second, self._windows_now = second, Windows.at(second, self._window)
        return self._windows_now

    async def admit(
        self,
        team: str,
        request_id: str,
        *,
        cost_of: Callable[[BudgetDecision], int],
        tokens: int,
        key: tuple[str, SpendLimits | None] | None = None,
    ) -> Admission:
        """Reserve the request's maximum cost (`cost_of` the plan its budget standing
        leaves it) and tokens against its team's limits, then its key's (`key`: its id and
        limits); 429 when a rate or (with `at_limit: refuse`) a budget is spent, 503 when
        the store is down and fails closed."""
        admission = await self._admit_team(team, request_id, cost_of=cost_of, tokens=tokens)
        key_id, limits = key or ("", None)
        if limits is None or not limits.limited:
            return admission
        caps = caps_of(limits)
        windows = admission.windows or self._windows()
        ask = Ask(f"key:{key_id}", request_id, cost_of(admission.decision), tokens)
        try:
            standing = await self._reserve(ask, caps, windows)
        except APIError:
            await self.settle(admission, 0.0, 0)  # the team's claim goes back
            raise
        if not standing.admitted:
            await self.settle(admission, 0.0, 0)
            raise self._refused(f"API key {key_id}", standing, caps, windows)
        share, left = _share(standing, caps)
        admission.claims.append(ask)
        admission.windows = windows
        admission.headers.update(_rate_headers(standing, caps, windows))  # the key's, if any
        if left is not None:
            admission.remaining_usd = min(left, admission.remaining_usd or left)
        if share is not None:
            admission.share = max(share, admission.share or share)
        return admission

    async def _admit_team(
        self,
        team: str,
        request_id: str,
        *,
        cost_of: Callable[[BudgetDecision], int],
        tokens: int,
    ) -> Admission:
        found = self._teams.get(team)
        if found is None:
            return Admission(team)
        _, routing, caps = found
        windows = self._windows()
        scope = f"team:{team}"
        decision: BudgetDecision = "ok"
        if routing.degrade_at is not None:  # the standing decides the plan, then its cost
            current = await self._call(self._store.standing(scope, windows))
            share, _ = _share(current, caps)
            spent = _exhausted(current, caps)
            if spent is not None and routing.at_limit == "refuse":
                raise self._refused(
                    f"team '{team}'", replace(current, refused_by=spent), caps, windows
                )
            if spent is not None:
                decision = "local_only"
            elif share is not None and share >= routing.degrade_at:
                decision = "rerouted" if routing.route else "degraded"
        ask = Ask(scope, request_id, cost_of(decision), tokens)
        standing = await self._reserve(ask, caps, windows)
        over_budget = standing.refused_by in ("usd_per_day", "usd_per_month")
        if not standing.admitted and over_budget and routing.at_limit == "local":
            decision = "local_only"
            ask = Ask(scope, request_id, cost_of(decision), tokens)
            standing = await self._reserve(ask, caps, windows)
        if not standing.admitted:
            raise self._refused(f"team '{team}'", standing, caps, windows)
        share, left = _share(standing, caps)
        headers = _rate_headers(standing, caps, windows)
        return Admission(team, decision, share, left, headers, [ask], windows)

    async def _reserve(self, ask: Ask, caps: Caps, windows: Windows) -> Standing:
        try:  # (not through _call: one coroutine fewer on every request)
            return await self._store.reserve(ask, caps, windows, self._ttl)
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from None

    async def _call(self, call: Awaitable[Standing]) -> Standing:
        try:
            return await call
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: StoreUnavailable) -> APIError:
        self._on_error(str(exc))
        return APIError(
            503,
            "the budget store is unreachable, and this gateway refuses rather than "
            "spend unchecked (budgets.on_store_error: fail_closed)",
            type_="server_error",
            code="budget_store_unavailable",
        )

    def _refused(self, who: str, standing: Standing, caps: Caps, windows: Windows) -> APIError:
        reason = standing.refused_by or "requests"
        rate = reason in ("requests", "tokens")
        wait = {
            "requests": windows.minute_reset_s,
            "tokens": windows.minute_reset_s,
            "usd_per_day": windows.day_reset_s,
            "usd_per_month": windows.month_reset_s,
        }[reason]
        why = ""
        if reason in ("usd_per_day", "usd_per_month"):  # say what holds it: spend, or requests
            daily = reason == "usd_per_day"
            cap = caps.nano_per_day if daily else caps.nano_per_month
            spent = standing.spent_day_nano if daily else standing.spent_month_nano
            why = (
                f" (${cap / NANO:.4f}): ${spent / NANO:.4f} spent, "
                f"${standing.reserved_nano / NANO:.4f} held for requests in progress, and "
                "this request's most it could cost does not fit in what is left"
            )
        error = APIError(
            429,
            f"{who} has reached its {_REFUSALS[reason]}{why}; retry in {math.ceil(wait)} s",
            type_="requests" if rate else "insufficient_quota",
            code="rate_limit_exceeded" if rate else "budget_exceeded",
        )
        error.headers.update(_rate_headers(standing, caps, windows))
        error.headers["Retry-After"] = str(math.ceil(wait))
        error.headers["retry-after-ms"] = str(math.ceil(wait * 1000))
        return error

    async def settle(self, admission: Admission, cost_usd: float, tokens: int) -> None:
        """Replace the reservation with what the request cost (never raises: a store that
        is down lets the reservation expire)."""
        claims, admission.claims = admission.claims, []  # each settles once
        if admission.windows is None:
            return
        for claim in claims:
            try:
                await self._store.settle(claim, admission.windows, round(cost_usd * NANO), tokens)
            except StoreUnavailable as exc:
                self._on_error(str(exc))

    async def standing(self, team: str) -> dict[str, object] | None:
        """A team's spend, limits and what is left (for the spend endpoints)."""
        found = self._teams.get(team)
        if found is None:
            return None
        limits, _, caps = found
        windows = self._windows()
        try:
            standing = await self._store.standing(f"team:{team}", windows)
        except StoreUnavailable as exc:
            raise APIError(
                503, str(exc), type_="server_error", code="budget_store_unavailable"
            ) from None
        share, left = _share(standing, caps)
        return {
            "team": team,
            "limits": limits.model_dump(exclude_none=True) if limits.limited else None,
            "spent_usd": {
                "day": standing.spent_day_nano / NANO,
                "month": standing.spent_month_nano / NANO,
            },
            "reserved_usd": standing.reserved_nano / NANO,
            "this_minute": {"requests": standing.requests, "tokens": standing.tokens},
            "budget_share": share,
            "remaining_usd": left,
            "windows": {"day": windows.day, "month": windows.month},
        }
