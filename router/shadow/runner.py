"""Shadow checks, off the request path.

A request sampled at its route's `shadow.rate` is checked after its answer went out, in
one of three ways (the record's `local_outcome`):

- `accepted`: the local tier's answer was served; the same request goes to the reference
  tier (a paid call, under the route's daily cap) and the two answers are compared.
- `escalated`: the local tier answered, its acceptance rejected the answer, and a remote
  tier's answer was served: the two are compared at no cost (nothing is called). These are
  what let a threshold move down as well as up (`cascade classify calibrate --from-ledger`).
- `skipped`: the pre-router sent the request past the local tier (sampled at
  `shadow.prerouter_rate`): the local tier answers it in the background, when its queue is
  empty, and its answer is compared with the one served — labels for the pre-router.

A bounded queue per route holds checks, two background tasks work them, a judge compares
the answers, and a `ShadowRecord` goes to the ledger linked to the request: the verdict,
what the check cost, and the features the classifiers use (not the prompt, unless
`ledger.log_prompts`), so models can be refitted from the ledger alone. The client's answer
is never touched and its latency only by the offer (a few dictionary operations); a full
queue or a spent day drops the check (counted). The daily cap holds each paid check's
maximum cost before the call, so concurrent checks cannot pass it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from classifiers.features import acceptance_features, prompt_features
from router.backends.base import (
    Backend,
    BackendError,
    Completion,
    GenerationParams,
    Message,
    Prompt,
)
from router.backends.spec import PriceSpec
from router.policy.model import AcceptanceSpec, AutotuneSpec, Policy, ShadowSpec
from router.records import call_cost, iso_time
from router.shadow.autotune import Observed, Tuner, TuneRecord
from router.shadow.cap import DayCap, MemoryCap, RedisCap, nano
from router.shadow.judges import JUDGES, LLM_JUDGE, llm_judge_prompt, read_judgement

_TASKS = 2  # checks in flight at once (each one remote call)


@dataclass(slots=True)
class ShadowRecord:
    """One shadow check: the ledger's record of it (`kind: shadow`), linked by `shadow_of`."""

    request_id: str  # its own id
    shadow_of: str  # the request whose local answer was checked
    team: str
    route: str
    policy_version: str
    judge: str
    local_tier: str
    local_model: str
    reference_tier: str
    local_outcome: str = "accepted"  # accepted | escalated | skipped (see the module)
    kind: str = "shadow"
    ts: str = field(default_factory=lambda: iso_time(time.time()))
    verdict: str = "error"  # agree | disagree | inconclusive | error
    local_confidence: float | None = None  # the step's acceptance value (its threshold's scale)
    prerouter_score: float | None = None  # the route's pre-router score, when it has one
    target_quality: float | None = None
    reference_model: str | None = None
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    prompt_tokens: int = 0  # the reference tier's answer's
    completion_tokens: int = 0
    # the served local answer's, when the reference was asked: how the two tiers' counts
    # relate on answers that were kept (`cascade policy simulate` prices calls by it)
    local_prompt_tokens: int | None = None
    local_completion_tokens: int | None = None
    # the classifiers' features (classifiers/features.py): PROMPT_NAMES, ACCEPTANCE order
    features: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    prompt: str | None = None  # only when the policy's ledger.log_prompts is on


@dataclass(slots=True)
class ShadowJob:
    """One check. Of the two answers, the one not yet known comes from `backend`: the
    reference tier's (accepted local answers) or the local tier's (pre-router skips)."""

    record: ShadowRecord
    spec: ShadowSpec
    prompt: Prompt
    params: GenerationParams
    local_answer: str | None
    reference_answer: str | None = None
    backend: Backend | None = None
    price: PriceSpec | None = None
    max_cost_usd: float = 0.0  # the call's and the LLM judge's, held against the day's cap
    held: tuple[str, int] | None = None  # (UTC day, nano-USD) held until the check settles
    judge: Backend | None = None  # with judge llm
    judge_price: PriceSpec | None = None
    # the policy's acceptance of the local step, when the answer was judged on its scale
    # (what autotune re-tunes; None when a rule's override judged it another way)
    step: AcceptanceSpec | None = None


def features_of(question: str, local: Completion) -> dict[str, list[float]]:
    """What the pre-router and the acceptance model would be fitted on, for this request."""
    return {
        "prompt": [round(v, 6) for v in prompt_features(question)],
        "acceptance": [
            round(v, 6)
            for v in acceptance_features(
                question, local.text, local.token_logprobs or (), local.finish_reason
            )
        ],
    }


class ShadowRunner:
    """The queue and the tasks that work it, for the server's lifetime."""

    def __init__(
        self,
        submit: Callable[[ShadowRecord], None],
        count: Callable[[str, str], None],
        *,
        clock: Callable[[], float] = time.time,
        chance: Callable[[], float] | None = None,
        tuner: Tuner | None = None,
        shared_cap: RedisCap | None = None,
    ) -> None:
        self.tuner = tuner or Tuner(lambda _: None, lambda _: None)  # routes' autotune
        self._submit = submit  # to the ledger
        self._count = count  # (route, result): a verdict, or dropped / capped
        self._clock = clock
        self._chance = chance or random.Random().random  # noqa: S311 - sampling, not secrets
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue()
        self._queued: Counter[str] = Counter()  # per route
        self._tuning: set[asyncio.Task[TuneRecord | None]] = set()  # observations of shared windows
        self._caps: dict[str, DayCap] = {"memory": MemoryCap()}  # by shadow.cap_store
        self._shared_cap = shared_cap  # cap_store: redis (CASCADE_REDIS_URL)
        if shared_cap is not None:
            self._caps["redis"] = shared_cap
        self._tasks: list[asyncio.Task[None]] = []

    def sampled(self, rate: float) -> bool:
        return rate > 0 and self._chance() < rate

    def offer(self, job: ShadowJob) -> bool:
        """Queue a check (False: the route's queue is full; counted)."""
        route = job.record.route
        if self._queued[route] >= job.spec.queue:
            self._count(route, "dropped")
            return False
        self._queued[route] += 1
        self._queue.put_nowait(job)
        return True

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(_TASKS)]

    async def aclose(self) -> None:
        """Stop; checks still queued are dropped (best effort, never the client's)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tuning:  # a shared window's round trips: at most a second each
            await asyncio.wait(self._tuning, timeout=2.0)
        await self.tuner.aclose()
        if self._shared_cap is not None:
            await self._shared_cap.aclose()

    def _day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self._clock()))

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._queued[job.record.route] -= 1
            try:
                await self._check(job)
            except Exception as exc:  # noqa: BLE001 - a check must never stop the runner
                job.record.error = f"internal error ({type(exc).__name__})"
                self._finish(job, "error")

    async def _check(self, job: ShadowJob) -> None:
        """Hold the check's cost, run it, and settle what it held however it ended."""
        if not await self._hold(job):
            return
        try:
            if job.local_answer is not None and job.reference_answer is not None:
                await self._judge(job, job.local_answer, job.reference_answer)  # perhaps an LLM
            elif job.local_answer is None:
                await self._answer_locally(job)
            else:
                await self._ask_reference(job, job.local_answer)
        finally:
            await self._settle(job)

    async def _hold(self, job: ShadowJob) -> bool:
        """Hold the check's maximum cost against its route's day (False: the day is spent,
        or its store cannot be reached; counted)."""
        if not job.max_cost_usd:
            return True
        route, day, amount = job.record.route, self._day(), nano(job.max_cost_usd)
        cap = self._caps.get(job.spec.cap_store)
        held = (
            None if cap is None else await cap.hold(route, day, amount, nano(job.spec.usd_per_day))
        )
        if not held:
            self._count(route, "capped" if held is False else "cap_unavailable")
            return False
        job.held = (day, amount)
        return True

    async def _settle(self, job: ShadowJob) -> None:
        """What the check cost replaces what it held (on the day it held it)."""
        if job.held is not None:
            day, amount = job.held
            job.held = None
            cap = self._caps[job.spec.cap_store]
            await cap.settle(job.record.route, day, nano(job.record.cost_usd) - amount)

    async def _judge(self, job: ShadowJob, local: str, reference: str) -> None:
        if job.spec.judge != "llm":
            self._finish(job, JUDGES[job.spec.judge](local, reference))
            return
        assert job.judge is not None
        assert job.judge_price is not None
        job.record.judge = f"llm:{LLM_JUDGE}"
        asked = Prompt(
            messages=(Message("user", llm_judge_prompt(job.prompt.question, reference, local)),)
        )
        try:
            said = await job.judge.complete(asked, GenerationParams(4, temperature=0.0))
        except BackendError as exc:
            job.record.error = f"judge: {exc.message}"
            self._finish(job, "error")
            return
        job.record.cost_usd = round(
            job.record.cost_usd + job.judge_price.cost(said.prompt_tokens, said.completion_tokens),
            10,
        )
        self._finish(job, read_judgement(said.text))

    async def _answer_locally(self, job: ShadowJob) -> None:
        assert job.backend is not None
        assert job.reference_answer is not None
        if job.backend.queue_depth:  # clients are waiting for the local tier: not now
            self._count(job.record.route, "busy")
            return
        started = time.perf_counter()
        try:
            local = await job.backend.complete(job.prompt, job.params)
        except BackendError as exc:
            job.record.error = exc.message
            self._finish(job, "error")
            return
        job.record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        job.record.local_model = local.model
        job.record.features = features_of(job.prompt.question, local)
        await self._judge(job, local.text, job.reference_answer)

    async def _ask_reference(self, job: ShadowJob, local_answer: str) -> None:
        assert job.backend is not None
        assert job.price is not None
        record = job.record
        started = time.perf_counter()
        try:
            answer = await job.backend.complete(job.prompt, job.params)
        except BackendError as exc:
            record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            record.error = exc.message
            self._finish(job, "error")
            return
        record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        record.cost_usd = call_cost(
            job.price,
            answer.prompt_tokens,
            answer.completion_tokens,
            record.latency_ms,
            answer.cached_tokens,
        )
        record.prompt_tokens, record.completion_tokens = (
            answer.prompt_tokens,
            answer.completion_tokens,
        )
        record.reference_model = answer.model
        await self._judge(job, local_answer, answer.text)

    def _tune(
        self, record: ShadowRecord, step: AcceptanceSpec, autotune: AutotuneSpec, target: float
    ) -> None:
        """Hand a conclusive check of the local step to autotune."""
        assert record.local_confidence is not None
        self._observe(
            Observed(
                record.route,
                record.local_tier,
                record.local_confidence,
                record.verdict == "agree",
                spec=step,
                autotune=autotune,
                target_quality=target,
                policy_version=record.policy_version,
            )
        )

    def _observe(self, check: Observed) -> None:
        """This process's window, or the shared one (a round trip to Redis, off this task)."""
        if check.autotune.store == "memory":
            self.tuner.observe(check)
            return
        task = asyncio.create_task(self.tuner.observe_shared(check))
        self._tuning.add(task)
        task.add_done_callback(self._tuning.discard)

    def feedback(
        self, policy: Policy, *, version: str, route: str, tier: str, value: float, good: bool
    ) -> bool:
        """An application's good or bad on a local answer the route's step kept at acceptance
        `value`: to autotune as a check, when the route's `autotune.feedback` asks for it.
        Whether it was taken."""
        spec = policy.routes.get(route)
        shadow = spec.shadow if spec is not None else None
        autotune = shadow.autotune if shadow is not None else None
        if spec is None or shadow is None or autotune is None or not autotune.feedback:
            return False
        target = shadow.target_quality
        step = next((s.acceptance for s in spec.cascade if s.tier == tier and s.acceptance), None)
        if step is None or target is None:
            return False
        self._observe(Observed(route, tier, value, good, step, autotune, target, version))
        return True

    def _finish(self, job: ShadowJob, verdict: str) -> None:
        record = job.record
        record.verdict = verdict
        self._count(record.route, verdict)
        self._submit(record)
        autotune, target = job.spec.autotune, job.spec.target_quality
        if (
            autotune is not None
            and target is not None
            and job.step is not None
            and verdict in ("agree", "disagree")
            and record.local_outcome in ("accepted", "escalated")
            and record.local_confidence is not None
        ):
            self._tune(record, job.step, autotune, target)


def new_shadow_id() -> str:
    return f"shadow-{secrets.token_hex(12)}"
