"""`cascade audit --reconcile EXPORT`: the ledger's remote attempts against a provider's usage
export, per team.

An export is CSV (a header row) or JSON (a list of rows; or OpenAI's usage/costs API pages,
`{"data": [{"start_time", "results": [...]}]}`). The columns it may carry, by any of their
usual names: the answer's id (`id`, `request_id`, `response_id`), its time (`timestamp`,
`time`, `created`, `start_time`: epoch seconds or ISO-8601), `model`, input tokens
(`input_tokens`, `prompt_tokens`, `n_context_tokens_total`), output tokens (`output_tokens`,
`completion_tokens`, `n_generated_tokens_total`) and cost (`cost`, `cost_usd`, `amount`).

Rows with an id are matched to the attempt whose `upstream_id` it is; the rest (an export of
hourly totals, or rows without ids) are compared by model and UTC hour, and the difference of
each such bucket is shared among the teams in proportion to their ledger cost in it. A
provider row nothing in the ledger matches is `unmatched` (no team can be named).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_ID = ("id", "request_id", "response_id", "upstream_id")
_TIME = ("timestamp", "time", "created", "created_at", "start_time", "ts")
_MODEL = ("model", "model_name", "snapshot_id")
_INPUT = ("input_tokens", "prompt_tokens", "n_context_tokens_total")
_OUTPUT = ("output_tokens", "completion_tokens", "n_generated_tokens_total")
_COST = ("cost", "cost_usd", "amount", "amount_usd")


@dataclass(slots=True)
class ProviderRow:
    id: str | None
    hour: str | None  # YYYY-MM-DDTHH (UTC)
    model: str
    input_tokens: int
    output_tokens: int
    cost: float | None


@dataclass(slots=True)
class LedgerAttempt:
    team: str
    upstream_id: str | None
    hour: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: float
    estimated: bool


@dataclass(slots=True)
class TeamFigures:
    ledger_usd: float = 0.0
    provider_usd: float = 0.0
    ledger_tokens: int = 0
    provider_tokens: int = 0
    matched: int = 0  # attempts matched by id
    by_hour: int = 0  # attempts compared within a (model, hour) bucket
    unmatched: int = 0  # attempts the export does not have
    estimated_usd: float = 0.0  # of ledger_usd

    def as_dict(self) -> dict[str, Any]:
        difference = self.ledger_usd - self.provider_usd
        return {
            "ledger_usd": round(self.ledger_usd, 8),
            "provider_usd": round(self.provider_usd, 8),
            "difference_usd": round(difference, 8),
            "difference_pct": round(100 * difference / self.provider_usd, 3)
            if self.provider_usd
            else None,
            "ledger_tokens": self.ledger_tokens,
            "provider_tokens": self.provider_tokens,
            "matched_by_id": self.matched,
            "matched_by_hour": self.by_hour,
            "unmatched_attempts": self.unmatched,
            "estimated_usd": round(self.estimated_usd, 8),
        }


@dataclass(slots=True)
class _Bucket:
    provider_usd: float = 0.0
    provider_tokens: int = 0
    ledger_usd: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    ledger_tokens: Counter[str] = field(default_factory=Counter)


def _first(row: Mapping[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return value
    return None


def _hour(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H")


def _number(value: Any) -> float:
    if isinstance(value, Mapping):  # OpenAI's costs API: {"value": 0.01, "currency": "usd"}
        value = value.get("value")
    return float(value) if value not in (None, "") else 0.0


def _rows(data: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        for page in data["data"]:
            results = page.get("results") if isinstance(page, Mapping) else None
            if isinstance(results, list):  # a time bucket of OpenAI's usage or costs API
                for result in results:
                    if isinstance(result, Mapping):
                        yield {"start_time": page.get("start_time"), **result}
            elif isinstance(page, Mapping):
                yield page
    elif isinstance(data, list):
        yield from (row for row in data if isinstance(row, Mapping))
    else:
        raise ValueError("a usage export is a JSON list of rows, or OpenAI's {data: [...]}")


def read_export(text: str) -> list[ProviderRow]:
    """A usage export (CSV or JSON) as rows; a row without tokens or cost is skipped."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        found: Iterable[Mapping[str, Any]] = _rows(json.loads(text))
    else:
        found = csv.DictReader(io.StringIO(text))
    rows = []
    for row in found:
        cost = _first(row, _COST)
        tokens_in = int(_number(_first(row, _INPUT)))
        tokens_out = int(_number(_first(row, _OUTPUT)))
        if cost is None and not tokens_in and not tokens_out:
            continue
        identity = _first(row, _ID)
        rows.append(
            ProviderRow(
                id=str(identity) if identity is not None else None,
                hour=_hour(_first(row, _TIME)),
                model=str(_first(row, _MODEL) or "-"),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost=_number(cost) if cost is not None else None,
            )
        )
    return rows


def ledger_attempts(records: Iterable[Mapping[str, Any]]) -> list[LedgerAttempt]:
    """Every remote attempt of every request record that a provider bills (not those it
    refused before generating: no tokens, no cost)."""
    found = []
    for record in records:
        if record.get("kind") in ("shadow", "tune"):
            continue
        for attempt in record.get("attempts") or ():
            if attempt.get("local") or attempt.get("backend") == "llama_cpp":
                continue
            tokens = (attempt.get("prompt_tokens") or 0) + (attempt.get("completion_tokens") or 0)
            if attempt.get("outcome") == "skipped" or not (tokens or attempt.get("cost_usd")):
                continue  # nothing billed: skipped, or refused before generating
            found.append(
                LedgerAttempt(
                    team=str(record.get("team") or "-"),
                    upstream_id=attempt.get("upstream_id"),
                    hour=str(attempt.get("started_at") or record["ts"])[:13],
                    model=str(attempt.get("model") or "-"),
                    input_tokens=int(attempt.get("prompt_tokens") or 0),
                    output_tokens=int(attempt.get("completion_tokens") or 0),
                    cost=float(attempt.get("cost_usd") or 0.0),
                    estimated=attempt.get("usage_source") == "estimated",
                )
            )
    return found


def reconcile(attempts: list[LedgerAttempt], rows: list[ProviderRow]) -> dict[str, Any]:
    """Per team: what the ledger says, what the provider billed, the difference; and what
    the provider billed that the ledger has no attempt for."""
    teams: dict[str, TeamFigures] = defaultdict(TeamFigures)
    by_id = {row.id: row for row in rows if row.id is not None}
    buckets: dict[tuple[str, str], _Bucket] = defaultdict(_Bucket)
    for row in rows:
        if row.id is None and row.hour is not None:
            billed_hour = buckets[(row.model, row.hour)]
            billed_hour.provider_usd += row.cost or 0.0
            billed_hour.provider_tokens += row.input_tokens + row.output_tokens
    used: set[str] = set()
    for attempt in attempts:
        figures = teams[attempt.team]
        figures.ledger_usd += attempt.cost
        figures.ledger_tokens += attempt.input_tokens + attempt.output_tokens
        figures.estimated_usd += attempt.cost if attempt.estimated else 0.0
        billed = by_id.get(attempt.upstream_id) if attempt.upstream_id else None
        if billed is not None:
            used.add(attempt.upstream_id or "")
            figures.matched += 1
            figures.provider_usd += billed.cost if billed.cost is not None else attempt.cost
            figures.provider_tokens += billed.input_tokens + billed.output_tokens
            continue
        bucket = buckets.get((attempt.model, attempt.hour))
        if bucket is None:
            figures.unmatched += 1
            continue
        figures.by_hour += 1
        bucket.ledger_usd[attempt.team] += attempt.cost
        bucket.ledger_tokens[attempt.team] += attempt.input_tokens + attempt.output_tokens
    for shared in buckets.values():  # a bucket's bill, shared by the teams' ledger cost in it
        spent = sum(shared.ledger_usd.values())
        tokens = sum(shared.ledger_tokens.values())
        for team, cost in shared.ledger_usd.items():
            share = cost / spent if spent else 1 / len(shared.ledger_usd)
            teams[team].provider_usd += shared.provider_usd * share
            token_share = shared.ledger_tokens[team] / tokens if tokens else share
            teams[team].provider_tokens += round(shared.provider_tokens * token_share)
    orphans = [row for row in rows if row.id is not None and row.id not in used]
    orphans += [
        row
        for row in rows
        if row.id is None and (row.hour is None or not buckets[(row.model, row.hour)].ledger_usd)
    ]
    total = TeamFigures()
    for found in teams.values():
        for name in TeamFigures.__slots__:
            setattr(total, name, getattr(total, name) + getattr(found, name))
    return {
        "teams": {team: figures.as_dict() for team, figures in sorted(teams.items())},
        "total": total.as_dict(),
        "unmatched_provider_rows": len(orphans),
        "unmatched_provider_usd": round(sum(row.cost or 0.0 for row in orphans), 8),
    }


def render(report: dict[str, Any]) -> str:
    """The reconciliation as a fixed-width table."""
    head = (
        f"{'team':<20} {'ledger $':>12} {'provider $':>12} {'diff $':>12} {'diff %':>8} "
        f"{'estimated $':>12} {'by id':>7} {'by hour':>8} {'unmatched':>9}"
    )
    lines = [head, "-" * len(head)]
    for team, row in [*report["teams"].items(), ("TOTAL", report["total"])]:
        pct = "—" if row["difference_pct"] is None else f"{row['difference_pct']:.2f}"
        lines.append(
            f"{team[:20]:<20} {row['ledger_usd']:>12.6f} {row['provider_usd']:>12.6f} "
            f"{row['difference_usd']:>12.6f} {pct:>8} {row['estimated_usd']:>12.6f} "
            f"{row['matched_by_id']:>7} {row['matched_by_hour']:>8} {row['unmatched_attempts']:>9}"
        )
    lines.append(
        f"provider rows the ledger does not have: {report['unmatched_provider_rows']} "
        f"(${report['unmatched_provider_usd']:.6f})"
    )
    return "\n".join(lines) + "\n"
