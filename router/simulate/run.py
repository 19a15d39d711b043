"""Both passes of a simulation, and the report they make."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from router.ledger.base import Reader
from router.policy import LoadedPolicy
from router.simulate.evidence import Evidence, gather, team_of
from router.simulate.replay import NotReplayable, Replayer, as_recorded
from router.simulate.tally import Side, Spread, Tally

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

    The second pass is split among processes: a team with limits in the candidate has all
    its requests replayed by one process, in order (its budget fills with its own spend);
    every other request goes to the process its position picks."""
    scope = scope or Scope()
    limited = frozenset(name for name, t in loaded.policy.teams.items() if t.limits.limited)
    with contextlib.closing(open_reader()) as reader:
        # checks and feedback may be written after the window they speak of
        evidence = gather(reader.records(scope.since, None), limited)
    count = _workers(workers, evidence.requests)
    parts = _parts(evidence, count) if count > 1 else [Part(0, {}, (0,))]
    if count == 1:
        tally = _replay_part(open_reader, loaded, evidence, scope, parts[0])
    else:
        tally = _in_processes(open_reader, loaded, evidence, scope, parts)
    return _report(tally, evidence, loaded, source, scope)


@dataclass(frozen=True, slots=True)
class Part:
    """Which requests one process replays: those of the limited teams it owns, and of the
    rest those whose position falls in its slots (`slots[position % len(slots)]`)."""

    index: int
    owners: dict[str, int]  # limited team -> the part that replays it
    slots: tuple[int, ...]  # the part each position's request goes to, cyclically

    def takes(self, position: int, body: bytes) -> bool:
        if len(self.slots) == 1:
            return True
        if self.owners and (team := team_of(body)) in self.owners:
            return self.owners[team] == self.index
        return self.slots[position % len(self.slots)] == self.index


def _workers(asked: int | None, requests: int) -> int:
    if asked is not None:
        return max(1, asked)
    if requests < _PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_WORKERS))


def _parts(evidence: Evidence, count: int) -> list[Part]:
    """Limited teams dealt to parts, the busiest first, each to the least loaded part; the
    other requests dealt so that every part ends with about as many (a part that holds a
    busy limited team gets fewer of them, or none)."""
    load = [0] * count
    owners = {}
    for team, requests in evidence.teams.most_common():
        part = load.index(min(load))
        owners[team] = part
        load[part] += requests
    target = evidence.requests / count
    room = [max(0.0, target - held) for held in load]
    if not sum(room):
        room = [1.0] * count
    slots: list[int] = []
    for part, space in enumerate(room):
        slots += [part] * round(_SLOTS * space / sum(room))
    return [Part(index, owners, tuple(slots or [0])) for index in range(count)]


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


def _notes(loaded: LoadedPolicy, tally: Tally) -> list[str]:
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
        "The response cache is not re-run: a recorded hit is carried over as it was (cost 0), "
        "and a route the candidate newly caches is simulated without hits."
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
        "notes": _notes(loaded, tally),
    }
