"""Both passes of a simulation, and the report they make."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

from router.ledger.base import Reader
from router.policy import LoadedPolicy
from router.policy.model import Policy
from router.simulate.evidence import Evidence, budget_of, gather
from router.simulate.replay import NotReplayable, Replayer, as_recorded
from router.simulate.tally import Side, Spread, Tally
from router.simulate.tokens import FEW_PAIRS

_PARALLEL_FROM = 50_000  # requests below which one process replays them all
_MAX_WORKERS = 8
_SLOTS = 1000  # the other requests are dealt out in cycles of this many


@dataclass(frozen=True, slots=True)
class Scope:
    """Which records a simulation replays: `since <= ts < until`, of `team`, and those whose
    recorded or replayed route is `route`."""

    since: str | None = None
    until: str | None = None
    team: str | None = None
    route: str | None = None


def simulate(
    open_reader: Callable[[], Reader],
    loaded: LoadedPolicy,
    *,
    source: str,
    scope: Scope | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The report of replaying the ledger's records in `scope` under `loaded`, on up to
    `workers` processes (default: one per CPU, at most 8; one for small ledgers).

    The second pass is split among processes: the requests of one budget window (a day, or a
    month, of a team with limits in the candidate) are replayed by one process, in order (its
    budget fills with its own spend); every other request goes to the process its position
    picks."""
    scope = scope or Scope()
    periods = budget_periods(loaded.policy)
    with contextlib.closing(open_reader()) as reader:
        # checks and feedback may be written after the window they speak of
        evidence = gather(reader.records(scope.since, None), periods)
    count = _workers(workers, evidence.requests)
    parts = _parts(evidence, count, periods) if count > 1 else [Part(0, 1, {}, (0,))]
    if count == 1:
        tally = _replay_part(open_reader, loaded, evidence, scope, parts[0])
    else:
        tally = _in_processes(open_reader, loaded, evidence, scope, parts)
    return _report(tally, evidence, loaded, source, scope)


@dataclass(frozen=True, slots=True)
class Part:
    """Which requests one process replays: those in the budget windows it owns (of the teams
    with limits), and of the rest those whose position falls in its slots
    (`slots[position % len(slots)]`)."""

    index: int
    count: int
    owners: dict[str, int]  # budget window (`team<TAB>period`) -> the part that replays it
    slots: tuple[int, ...]  # the part each position's request goes to, cyclically
    periods: dict[str, int] = field(default_factory=dict)  # limited team -> its window (budget_of)

    def takes(self, position: int, body: bytes) -> bool:
        if self.count == 1:
            return True
        if self.periods and (window := budget_of(body, self.periods)) is not None:
            found = self.owners.get(window)
            if found is None:  # a window the first pass did not sample: dealt by its name
                found = zlib.crc32(window.encode()) % self.count
            return found == self.index
        return self.slots[position % len(self.slots)] == self.index


def budget_periods(policy: Policy) -> dict[str, int]:
    """The teams with limits, each with the window its budget state lives in (the length of
    a record's `ts` that names it): a day when it has no monthly budget (its day's spend and
    minute's rates start afresh each UTC day), else a month. Requests of one window replay in
    order in one process; windows are independent, so they replay side by side."""
    return {
        name: 7 if team.limits.usd_per_month is not None else 10
        for name, team in policy.teams.items()
        if team.limits.limited
    }


def _workers(asked: int | None, requests: int) -> int:
    if asked is not None:
        return max(1, asked)
    if requests < _PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_WORKERS))


def _parts(evidence: Evidence, count: int, periods: dict[str, int]) -> list[Part]:
    """Budget windows dealt to parts, the busiest first, each to the least loaded part; the
    other requests dealt so that every part ends with about as many (a part that holds a
    busy window gets fewer of them, or none)."""
    load = [0] * count
    owners = {}
    for window, requests in evidence.budgets.most_common():
        part = load.index(min(load))
        owners[window] = part
        load[part] += requests
    target = evidence.requests / count
    room = [max(0.0, target - held) for held in load]
    if not sum(room):
        room = [1.0] * count
    slots: list[int] = []
    for part, space in enumerate(room):
        slots += [part] * round(_SLOTS * space / sum(room))
    return [Part(index, count, owners, tuple(slots or [0]), periods) for index in range(count)]


def _in_processes(
    open_reader: Callable[[], Reader],
    loaded: LoadedPolicy,
    evidence: Evidence,
    scope: Scope,
    parts: list[Part],
) -> Tally:
    """Each part in a forked process (which shares the evidence and the policy, already in
    memory); their tallies merged."""
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for part in parts:
        receive, send = context.Pipe(duplex=False)

        def work(part: Part = part, send: Connection = send) -> None:
            try:
                send.send(_replay_part(open_reader, loaded, evidence, scope, part))
            except Exception as exc:  # noqa: BLE001 - the parent raises it
                send.send(exc)
            finally:
                send.close()

        process = context.Process(target=work, daemon=True)
        process.start()
        send.close()
        pipes.append(receive)
        processes.append(process)
    tally = Tally()
    try:
        for receive in pipes:
            found = receive.recv()
            if isinstance(found, Exception):
                raise found
            tally.merge(found)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    return tally


def _replay_part(
    open_reader: Callable[[], Reader],
    loaded: LoadedPolicy,
    evidence: Evidence,
    scope: Scope,
    part: Part,
) -> Tally:
    tally = Tally()
    with contextlib.closing(open_reader()) as reader:
        bodies = reader.records(scope.since, scope.until)
        asyncio.run(_replay(bodies, Replayer(loaded, evidence), tally, scope, part))
    return tally


async def _replay(
    bodies: Iterator[bytes],
    replayer: Replayer,
    tally: Tally,
    scope: Scope,
    part: Part,
) -> None:
    team, route = scope.team, scope.route
    loads = orjson.loads
    for position, body in enumerate(bodies):
        if not part.takes(position, body):
            continue
        record = loads(body)
        if record.get("kind") is not None:
            continue
        if team is not None and record.get("team") != team:
            continue
        tally.seen(record)
        actual = as_recorded(record)
        try:
            predicted = await replayer.replay(record)
        except NotReplayable as exc:
            if route is None or actual.route == route:
                tally.skip(record, str(exc))
            continue
        if route is not None and route not in (actual.route, predicted.route):
            continue
        tally.add(replayer.evidence, str(record["request_id"]), actual, predicted)


def _change(actual: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    def delta(name: str) -> float | None:
        a, p = actual.get(name), predicted.get(name)
        return None if a is None or p is None else round(p - a, 8)

    cost = actual["cost_usd"]
    return {
        "cost_usd": delta("cost_usd"),
        "cost_pct": None if not cost else round(100 * (predicted["cost_usd"] - cost) / cost, 2),
        "local_share": delta("local_share"),
        "escalations": delta("escalations"),
    }


def _notes(loaded: LoadedPolicy, tally: Tally, evidence: Evidence) -> list[str]:
    """What the replay could not model, as the report lists it."""
    policy = loaded.policy
    notes = [
        "Replayed from what records hold: a change of prompt template, system prompt or a "
        "tier's model parameters is not in them and is not simulated.",
        "Budgets and rates are replayed at the recorded arrival times; a client that would "
        "have retried after a 429 is not modelled, and API keys' own limits (the keys file) "
        "are not part of a policy.",
    ]
    notes.append(
        "Outcomes that depend on load (a tier's queue full, shed; a timeout) are replayed as "
        "they happened: a candidate that sends a tier more traffic may see more of them."
    )
    notes.append(
        "The response cache is not re-run: a recorded hit is carried over as it was (cost 0), "
        "and a route the candidate newly caches is simulated without hits."
    )
    for row in evidence.tokens.as_record():
        if isinstance(pairs := row["pairs"], int) and pairs < FEW_PAIRS:
            notes.append(
                f"Tokens of tier {row['to']} where it was never called are estimated from "
                f"{pairs} request{'' if pairs == 1 else 's'} that called both {row['from']} "
                f"and {row['to']}: too few to trust the interval; treat those costs as rough."
            )
    for name in sorted(set(policy.tiers) - tally.tiers_seen):
        notes.append(
            f"Tier {name} has no history in this ledger: where it would be judged, requests "
            "are not replayed; where its answer is always kept, its tokens are the recorded "
            "tier's (no pairs to scale them by) and its latency is unknown."
        )
    for name, spec in policy.teams.items():
        limits = spec.limits
        if limits.requests_per_minute is not None or limits.tokens_per_minute is not None:
            notes.append(f"Team {name}: rate limits replayed without client retries.")
    return notes


def _report(
    tally: Tally,
    evidence: Evidence,
    loaded: LoadedPolicy,
    source: str,
    scope: Scope,
) -> dict[str, Any]:
    route = scope.route
    spread = Spread(evidence.tokens, loaded.policy)
    actual = Tally.total(tally.actual).figures()
    predicted = Tally.total(tally.predicted).figures(spread)
    keys = sorted(set(tally.actual) | set(tally.predicted))
    groups = []
    for key in keys:
        if route is not None and key[1] != route:
            continue
        a, p = tally.actual.get(key), tally.predicted.get(key)
        groups.append(
            {
                "team": key[0],
                "route": key[1],
                "actual": (a or Side()).figures(),
                "predicted": (p or Side()).figures(spread),
            }
        )
    teams = [
        {
            "team": team,
            "actual": Tally.total(tally.actual, team).figures(),
            "predicted": Tally.total(tally.predicted, team).figures(spread),
        }
        for team in sorted({key[0] for key in keys})
    ]
    skipped = sum(tally.not_replayed.values())
    seen = actual["requests"] + skipped
    return {
        "ledger": source,
        "candidate": {"source": loaded.source, "version": loaded.version},
        "recorded_policies": dict(tally.recorded_policies.most_common()),
        "since": scope.since,
        "until": scope.until,
        "team": scope.team,
        "route": route,
        "first_record": tally.first_ts,
        "last_record": tally.last_ts,
        "requests": seen,
        "replayed": actual["requests"] - tally.carried,
        "carried": tally.carried,
        "not_replayed": {
            "requests": skipped,
            "share": round(skipped / seen, 4) if seen else None,
            "cost_usd": round(tally.not_replayed_usd, 8),
            "reasons": dict(tally.not_replayed.most_common(20)),
        },
        "totals": {"actual": actual, "predicted": predicted, "change": _change(actual, predicted)},
        "teams": teams,
        "groups": groups,
        "token_model": evidence.tokens.as_record(),
        "notes": _notes(loaded, tally, evidence),
    }
