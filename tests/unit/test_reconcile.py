"""`cascade audit --reconcile`: the ledger's remote attempts against a provider's usage
export, matched by the answer's id or by model and hour, the difference per team."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.audit.reconcile import ledger_attempts, read_export, reconcile, render


def _record(team: str, *attempts: dict[str, Any]) -> dict[str, Any]:
    return {"ts": "2026-12-05T10:00:01.000Z", "team": team, "attempts": list(attempts)}


def _attempt(upstream_id: str | None, cost: float, **extra: Any) -> dict[str, Any]:
    return {
        "tier": "large",
        "backend": "openai",
        "model": "gpt-x",
        "outcome": "accepted",
        "started_at": "2026-12-05T10:00:01.000Z",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cost_usd": cost,
        "usage_source": "reported",
        "upstream_id": upstream_id,
        **extra,
    }


RECORDS = [
    _record("search", _attempt("chatcmpl-1", 0.002)),
    _record("search", _attempt("chatcmpl-2", 0.003, usage_source="estimated")),
    _record("ads", _attempt("chatcmpl-3", 0.001)),
    _record("ads", {**_attempt(None, 0.0), "local": True, "backend": "llama_cpp"}),  # not billed
    _record("ads", _attempt("chatcmpl-4", 0.004)),  # the export does not have it
    {"kind": "shadow", "ts": "2026-12-05T10:00:02.000Z", "team": "ads", "cost_usd": 1.0},
]


def test_a_csv_export_matched_by_id_per_team() -> None:
    export = (
        "request_id,timestamp,model,prompt_tokens,completion_tokens,cost\n"
        "chatcmpl-1,1796464801,gpt-x,100,50,0.002\n"
        "chatcmpl-2,1796464801,gpt-x,100,60,0.0031\n"
        "chatcmpl-3,1796464801,gpt-x,100,50,0.001\n"
        "chatcmpl-9,1796464801,gpt-x,10,5,0.0005\n"
    )
    report = reconcile(ledger_attempts(RECORDS), read_export(export))
    search, ads = report["teams"]["search"], report["teams"]["ads"]
    assert (search["ledger_usd"], search["provider_usd"]) == (0.005, 0.0051)
    assert search["difference_usd"] == pytest.approx(-0.0001)
    assert search["estimated_usd"] == 0.003 and search["matched_by_id"] == 2
    assert (ads["matched_by_id"], ads["unmatched_attempts"]) == (1, 1)
    assert (ads["ledger_usd"], ads["provider_usd"]) == (0.005, 0.001)
    assert (report["unmatched_provider_rows"], report["unmatched_provider_usd"]) == (1, 0.0005)
    assert "TOTAL" in render(report)


def test_an_openai_usage_page_is_compared_by_model_and_hour() -> None:
    """Hourly totals, no ids: the hour's bill is shared by the teams' ledger cost."""
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": 1796464800,  # 2026-12-05T10:00Z
                "results": [
                    {"model": "gpt-x", "input_tokens": 400, "output_tokens": 200, "cost": 0.011}
                ],
            }
        ],
    }
    attempts = ledger_attempts(
        [_record("search", _attempt(None, 0.006)), _record("ads", _attempt(None, 0.004))]
    )
    report = reconcile(attempts, read_export(json.dumps(page)))
    assert report["teams"]["search"]["provider_usd"] == pytest.approx(0.0066)
    assert report["teams"]["ads"]["provider_usd"] == pytest.approx(0.0044)
    assert report["total"]["matched_by_hour"] == 2
    assert report["total"]["difference_pct"] == pytest.approx(-9.091, abs=0.001)


def test_an_export_that_is_neither_is_refused() -> None:
    with pytest.raises(ValueError, match="usage export"):
        read_export('{"rows": 1}')
