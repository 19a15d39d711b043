"""`cascade audit` on real traffic: its numbers against direct queries of the same ledger,
the HTML report in headless Chromium, and a Redis ledger with a duplicate."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from router.ledger import Entry
from router.ledger.redis_stream import RedisStreamSink
from router.records import DecisionRecord
from tests.support.browser import open_page
from tests.support.cascade import Cascade, StartCascade
from tests.support.keys import team_keys
from tests.support.processes import ServerProcess
from tests.support.redis_server import RedisServer

KEYS = {"alpha": "sk-alpha-audit-0001", "beta": "sk-beta-audit-0002"}
PROMPTS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "Write one word that rhymes with cat.",
    "What is 2 + 2?",
    "Say hello in Spanish.",
    "Explain the theory of general relativity in detail, with equations.",
    "List three prime numbers.",
    "What colour is the sky on a clear day?",
]


def audit(ledger: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "router", "audit", "--ledger", ledger, *args],
        capture_output=True,
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def traffic(start_cascade: StartCascade, llama_server: ServerProcess) -> Cascade:
    """Two teams' requests through the real cascade (local tier, escalations to a real
    llama.cpp server), plus a few invalid ones."""
    teams = team_keys(KEYS)
    cascade = start_cascade(
        textwrap.dedent(f"""\
        version: 1
        tiers:
          small: {{type: llama_cpp, n_ctx: 2048,
                  price: {{input_per_1m: 0.01, output_per_1m: 0.02}}}}
          large: {{type: openai, api_base: "{llama_server.url}/v1", model: smollm2-remote,
                  price: {{input_per_1m: 1.0, output_per_1m: 3.0}}}}
        routes:
          auto:
            cascade:
              - {{tier: small, acceptance: {{method: mean_prob, threshold: 0.6}}}}
              - {{tier: large}}
        teams:
        """)
        + teams
        + "\n"
    )
    for team, key in KEYS.items():
        for prompt in PROMPTS[: 8 if team == "alpha" else 5]:
            response = requests.post(
                f"{cascade.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "auto",
                    "max_tokens": 12,
                    "temperature": 0,
                    "stream": prompt.startswith("Say"),
                    "messages": [{"role": "user", "content": prompt}],
                },
                timeout=120,
            )
            assert response.status_code == 200, response.text
    for _ in range(2):
        bad = requests.post(
            f"{cascade.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEYS['beta']}"},
            json={"model": "auto", "messages": [], "n": 3},
            timeout=30,
        )
        assert bad.status_code == 400
    cascade.record(bad.headers["x-request-id"])  # waits until the last record is stored
    return cascade


def query(cascade: Cascade, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(cascade.ledger.removeprefix("sqlite:///")) as db:
        return db.execute(sql).fetchall()


def test_report_numbers_match_direct_queries_of_the_ledger(traffic: Cascade) -> None:
    report = json.loads(audit(traffic.ledger, "--by", "team,tier", "--format", "json").stdout)
    rows = query(
        traffic,
        """SELECT team, coalesce(final_tier, '-'), count(*), sum(cost_usd),
                  sum(json_extract(CAST(body AS TEXT), '$.counterfactual_cost_usd')),
                  sum(status = 'invalid'), sum(status = 'degraded')
           FROM records GROUP BY 1, 2""",
    )
    groups = {(g["key"]["team"], g["key"]["tier"]): g for g in report["groups"]}
    assert set(groups) == {(team, tier) for team, tier, *_ in rows}
    assert {team for team, *_ in rows} == {"alpha", "beta"}
    for team, tier, count, cost, counterfactual, invalid, degraded in rows:
        group = groups[(team, tier)]
        assert group["requests"] == count
        assert group["cost_usd"] == pytest.approx(cost, abs=1e-8)
        assert group["counterfactual_cost_usd"] == pytest.approx(counterfactual, abs=1e-8)
        assert (group["invalid"], group["degraded"]) == (invalid, degraded)
    ((escalated, requests, prompt, completion),) = query(
        traffic,
        """SELECT sum(EXISTS (SELECT 1 FROM json_each(CAST(body AS TEXT), '$.attempts') a
                              WHERE json_extract(a.value, '$.outcome') = 'escalated')),
                  count(*),
                  (SELECT sum(json_extract(a.value, '$.prompt_tokens')) FROM records r,
                          json_each(CAST(r.body AS TEXT), '$.attempts') a),
                  (SELECT sum(json_extract(a.value, '$.completion_tokens')) FROM records r,
                          json_each(CAST(r.body AS TEXT), '$.attempts') a)
           FROM records""",
    )
    totals = report["totals"]
    assert totals["requests"] == requests == 15
    assert escalated > 0  # the threshold sends some to the large tier
    assert totals["escalation_rate"] == pytest.approx(escalated / requests, abs=1e-4)
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (prompt, completion)
    latencies = [
        v
        for (v,) in query(
            traffic, "SELECT json_extract(CAST(body AS TEXT), '$.latency_ms') FROM records"
        )
    ]
    assert totals["latency_ms"]["p50"] == pytest.approx(
        float(np.quantile(latencies, 0.5)), rel=0.03
    )
    ttfts = [
        v
        for (v,) in query(
            traffic,
            """SELECT json_extract(a.value, '$.ttft_ms') FROM records r,
                      json_each(CAST(r.body AS TEXT), '$.attempts') a
               WHERE json_extract(a.value, '$.tier') = 'small'
                 AND json_extract(a.value, '$.ttft_ms') IS NOT NULL""",
        )
    ]
    (small,) = [t for t in report["tiers"] if t["tier"] == "small"]
    assert small["ttft_ms"]["p50"] == pytest.approx(float(np.quantile(ttfts, 0.5)), rel=0.03)
    assert sum(small["confidence_histogram"]) == small["outcomes"].get("accepted", 0) + small[
        "outcomes"
    ].get("escalated", 0)
    base = report["baselines"]
    assert base["always_large_usd"] == pytest.approx(totals["counterfactual_cost_usd"])
    table = audit(traffic.ledger, "--by", "team").stdout.decode()
    assert "alpha" in table and "beta" in table and "tiers" in table
    csv_lines = audit(traffic.ledger, "--format", "csv").stdout.decode().splitlines()
    assert csv_lines[0].startswith("team,requests,") and len(csv_lines) == 3


def test_html_report_renders_every_chart_offline(traffic: Cascade, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    audit(traffic.ledger, "--by", "team,route", "--format", "html", "--out", str(page))
    result = open_page(
        page,
        {
            "charts": "document.querySelectorAll('svg.chart').length",
            "drawn": "[...document.querySelectorAll('svg.chart')].map(c => c.dataset.drawn)",
            "rows": "document.querySelectorAll('table tr').length",
        },
        tmp_path / "report.png",
    )
    assert result.console_errors == []
    assert result.requests == [page.resolve().as_uri()]  # no network assets
    assert result.values["charts"] >= 5  # cost, tier mix, escalation, savings, confidence
    assert result.values["drawn"] == ["yes"] * result.values["charts"]
    assert result.values["rows"] > 3
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_a_redis_ledger_is_audited_once_per_request(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        entries = [
            Entry.of(DecisionRecord(request_id=f"r{n}", endpoint="/v1/completions",
                                    policy_version="v", team=team, cost_usd=0.5))
            for n, team in enumerate(["a", "a", "b"])
        ]  # fmt: skip

        async def fill() -> None:
            sink = RedisStreamSink(redis.url)
            await sink.write(entries)
            await sink.write(entries[:1])  # sent again after a lost reply
            await sink.aclose()

        asyncio.run(fill())
        report = json.loads(audit(redis.url, "--format", "json").stdout)
        by_team = {g["key"]["team"]: g for g in report["groups"]}
        assert (by_team["a"]["requests"], by_team["b"]["requests"]) == (2, 1)
        assert report["totals"]["cost_usd"] == pytest.approx(1.5)
    finally:
        redis.stop()
