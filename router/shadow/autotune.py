"""Automatic re-tuning of a route's acceptance threshold from its own shadow checks (policy
`routes.R.shadow.autotune`).

Each conclusive check of a local answer the step judged — accepted or escalated, drawn at
the same rate, so an unbiased sample across the whole range of its acceptance value — goes
into a window of the latest `window` checks of that (route, tier, acceptance method and
model). Every `every_checks` new checks, once `min_checks` are in, the threshold is
calibrated on the window exactly as `cascade classify calibrate --from-ledger` does (the
smallest escalation share whose routed quality reaches `target_quality`, the reference
tier's answers taken as right), bounded by `min_threshold`/`max_threshold` and moved at
most `max_step` at a time. A change is a ledger record of its own (`kind: tune`) with the
policy version it applies to, and logged; /metrics shows every step's threshold in force.

The tuned value overrides the policy's threshold while the policy's step (method, model,
threshold) and the autotune bounds stay as they were: editing any of them in the file hands
the threshold back to the file, and tuning restarts from it (the window of checks is kept
when the method and model are unchanged). With `store: memory` the state is per process: a
restart starts from the file's threshold. With `store: redis` the window and the threshold
are shared by every process (router/shadow/shared_windows.py).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from router.policy.model import AcceptanceSpec, AutotuneSpec, Policy
from router.records import iso_time
from router.shadow.calibrate import checks_threshold
from router.shadow.shared_windows import SharedWindows

_SAME = 1e-4  # a change smaller than this is no change


@dataclass(slots=True)
class TuneRecord:
    """One threshold change: the ledger's record of it (`kind: tune`)."""

    route: str
    tier: str
    method: str
    policy_version: str
    threshold_from: float
    threshold_to: float
    policy_threshold: float  # the file's value
    wanted: float  # what the window calibrates to, before bounds and max_step
    min_threshold: float
    max_threshold: float
    target_quality: float
    checks: int  # in the window
    agreement: float  # share of the window's local answers that agreed
    estimated_quality: float  # routed quality on the window at threshold_to
    escalated_share: float  # share of the window escalated at threshold_to
    request_id: str = field(default_factory=lambda: f"tune-{secrets.token_hex(12)}")
    kind: str = "tune"
    team: str = "-"  # not a team's request
    ts: str = field(default_factory=lambda: iso_time(time.time()))


@dataclass(frozen=True, slots=True)
class Observed:
    """One conclusive shadow check of a route step's answer, as autotune takes it."""

    route: str
    tier: str
    value: float  # the answer's acceptance value
    agree: bool  # with the reference tier
    spec: AcceptanceSpec  # the policy's acceptance of the step
    autotune: AutotuneSpec
    target_quality: float
    policy_version: str

    @property
    def step(self) -> tuple[str, str]:
        return self.route, self.tier


@dataclass(slots=True)
class _Window:
    values: deque[tuple[float, bool]]
    fresh: int = 0  # checks since the last re-tuning


@dataclass(frozen=True, slots=True)
class _Tuned:
    base: AcceptanceSpec  # the policy's step it was tuned from
    bounds: tuple[float, float]
    spec: AcceptanceSpec  # the same with the tuned threshold


@dataclass(frozen=True, slots=True)
class _Retuned:
    threshold: float
    wanted: float
    checks: int
    agreement: float
    estimated_quality: float
    escalated_share: float


def _retuned(
    values: Sequence[tuple[float, bool]], current: float, autotune: AutotuneSpec, target: float
) -> _Retuned | None:
    """The window's calibrated threshold, bounded and at most `max_step` from `current`;
    None when that is no change."""
    scores = np.array([value for value, _ in values])
    agree = np.array([agreed for _, agreed in values], dtype=bool)
    wanted = checks_threshold(scores, agree, quality=target).threshold
    bounded = min(max(wanted, autotune.min_threshold), autotune.max_threshold)
    stepped = min(max(bounded, current - autotune.max_step), current + autotune.max_step)
    new = round(stepped, 4)
    if abs(new - current) < _SAME:
        return None
    escalated = scores < new
    return _Retuned(
        threshold=new,
        wanted=wanted,
        checks=len(scores),
        agreement=round(float(agree.mean()), 6),
        estimated_quality=round(float(np.where(escalated, True, agree).mean()), 6),
        escalated_share=round(float(escalated.mean()), 6),
    )


class Tuner:
    """Windows of checks and the thresholds tuned from them, for the server's lifetime."""

    def __init__(
        self,
        submit: Callable[[TuneRecord], None],
        changed: Callable[[TuneRecord], None],
        shared: SharedWindows | None = None,
    ) -> None:
        self._submit = submit  # to the ledger
        self._changed = changed  # log
        self._shared = shared  # autotune.store: redis
        self._windows: dict[tuple[str, str, str, str | None], _Window] = {}
        self._tuned: dict[tuple[str, str], _Tuned] = {}

    def acceptance(
        self, route: str, tier: str, spec: AcceptanceSpec, autotune: AutotuneSpec | None
    ) -> AcceptanceSpec:
        """The acceptance in force for the route's step: the tuned threshold while the
        policy's step and bounds are those it was tuned from, else the policy's."""
        tuned = self._tuned.get((route, tier))
        if (
            tuned is None
            or autotune is None
            or tuned.base != spec
            or tuned.bounds != (autotune.min_threshold, autotune.max_threshold)
        ):
            return spec
        return tuned.spec

    def observe(self, check: Observed) -> TuneRecord | None:
        """Add one check to this process's window; re-tune when it is time. Returns the
        change made, if any."""
        spec, autotune = check.spec, check.autotune
        key = (check.route, check.tier, spec.method, spec.model)
        window = self._windows.get(key)
        if window is None or window.values.maxlen != autotune.window:
            kept = window.values if window is not None else ()
            window = self._windows[key] = _Window(deque(kept, maxlen=autotune.window))
        window.values.append((check.value, check.agree))
        window.fresh += 1
        if len(window.values) < autotune.min_checks or window.fresh < autotune.every_checks:
            return None
        window.fresh = 0
        current = self.acceptance(check.route, check.tier, spec, autotune).threshold
        found = _retuned(list(window.values), current, autotune, check.target_quality)
        return None if found is None else self._apply(check, found, current)

    async def observe_shared(self, check: Observed) -> TuneRecord | None:
        """`autotune.store: redis`: the same on one window shared by every process. The
        process whose check completes a round re-tunes and records the change (one record
        per change, not one per process); every process takes up the shared threshold with
        its next check."""
        if self._shared is None:
            return None
        reply = await self._shared.observe(check)
        if reply is None:  # Redis unreachable (reported): this process's threshold stays
            return None
        current, values = reply
        found = None
        if values is not None:
            start = check.spec.threshold if current is None else current
            found = _retuned(values, start, check.autotune, check.target_quality)
            if found is not None and await self._shared.publish(check, found.threshold):
                return self._apply(check, found, start)
        if current is not None:
            self._follow(check, current)
        return None

    def _follow(self, check: Observed, value: float) -> None:
        """Serve a threshold another process set (same policy step and bounds)."""
        if self.acceptance(*check.step, check.spec, check.autotune).threshold != value:
            self._tune(check, value)

    def _tune(self, check: Observed, value: float) -> None:
        self._tuned[check.step] = _Tuned(
            check.spec,
            (check.autotune.min_threshold, check.autotune.max_threshold),
            check.spec.model_copy(update={"threshold": value}),
        )

    def _apply(self, check: Observed, found: _Retuned, current: float) -> TuneRecord:
        self._tune(check, found.threshold)
        change = TuneRecord(
            route=check.route,
            tier=check.tier,
            method=check.spec.method,
            policy_version=check.policy_version,
            threshold_from=current,
            threshold_to=found.threshold,
            policy_threshold=check.spec.threshold,
            wanted=found.wanted,
            min_threshold=check.autotune.min_threshold,
            max_threshold=check.autotune.max_threshold,
            target_quality=check.target_quality,
            checks=found.checks,
            agreement=found.agreement,
            estimated_quality=found.estimated_quality,
            escalated_share=found.escalated_share,
        )
        self._submit(change)
        self._changed(change)
        return change

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()

    def thresholds(self, policy: Policy) -> dict[tuple[str, str], float]:
        """The threshold in force for every route step with an acceptance (/metrics)."""
        found: dict[tuple[str, str], float] = {}
        for name, route in policy.routes.items():
            autotune = route.shadow.autotune if route.shadow is not None else None
            for step in route.cascade[:-1]:
                if step.acceptance is not None:
                    spec = self.acceptance(name, step.tier, step.acceptance, autotune)
                    found[(name, step.tier)] = spec.threshold
        return found

    def in_force(self, policy: Policy) -> list[dict[str, object]]:
        """The tuned thresholds `policy` serves with (GET /admin/policy)."""
        shown: list[dict[str, object]] = []
        for (route, tier), tuned in sorted(self._tuned.items()):
            spec = policy.routes.get(route)
            autotune = spec.shadow.autotune if spec is not None and spec.shadow else None
            step = next((s for s in spec.cascade if s.tier == tier), None) if spec else None
            if step is None or step.acceptance is None:
                continue
            if self.acceptance(route, tier, step.acceptance, autotune) is tuned.spec:
                shown.append(
                    {
                        "route": route,
                        "tier": tier,
                        "threshold": tuned.spec.threshold,
                        "policy_threshold": tuned.base.threshold,
                    }
                )
        return shown
