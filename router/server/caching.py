"""The response cache on a request's way: an answer served from it (no tier called), and a
fresh answer stored in it after the request is settled (router/cache/ holds the cache)."""

from __future__ import annotations

from router.backends.base import Completion
from router.cache import Entry, Fold, Lookup, storable
from router.outcomes import Outcome
from router.records import DecisionRecord
from router.request import ClientRequest
from router.routing import Decision
from router.server.state import Runtime


async def cached(
    runtime: Runtime,
    record: DecisionRecord,
    *,
    decision: Decision,
    body: dict[str, object],
    client: ClientRequest,
    cache_control: str,
) -> tuple[Lookup | None, Entry | None]:
    """The request's use of the cache when its route caches (None: it does not), and the
    cached answer when it may be served from it."""
    cache = runtime.cache
    if cache is None:
        return None, None
    lookup = cache.lookup(
        endpoint=record.endpoint,
        version=runtime.loaded.version,
        decision=decision,
        team=record.team,
        body=body,
        client=client,
        cache_control=cache_control,
    )
    if lookup is None or not lookup.read:
        return lookup, None
    return lookup, await cache.get(lookup)


def served(entry: Entry) -> Outcome:
    """A cached answer as the cascade's outcome (no attempts: no tier was called)."""
    completion = entry.completion
    return Outcome([], entry.tier, completion.model, degraded=False, completion=completion)


def served_text(outcome: Outcome, fold: Fold | None) -> str | None:
    """The text the client was given (a live stream's as gathered in `fold`)."""
    if outcome.completion is not None:
        return outcome.completion.text
    found = fold.completion() if fold is not None else None
    return found.text if found is not None else None


def keep(
    runtime: Runtime,
    record: DecisionRecord,
    *,
    lookup: Lookup | None,
    hit: Entry | None,
    outcome: Outcome | None,
    fold: Fold | None,
) -> None:
    """A fresh answer to a request its route caches goes into the cache (a hit's record
    says what the cache saved instead)."""
    if lookup is None or runtime.cache is None:
        return
    record.cache = lookup.status
    if hit is not None:
        record.cache_hit = True
        record.cache_saved_usd = hit.cost_usd
        record.counterfactual_cost_usd = record.saved_usd = hit.counterfactual_usd
        return
    if not lookup.write or record.status != "ok" or outcome is None:
        return
    completion: Completion | None = outcome.completion
    if completion is None and fold is not None:
        completion = fold.completion()
    if completion is not None and storable(completion):
        entry = Entry(completion, outcome.tier, record.cost_usd, record.counterfactual_cost_usd)
        runtime.cache.put(lookup, entry)
