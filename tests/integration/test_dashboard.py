"""The Grafana dashboard in deploy/ asks only for what `/metrics` serves: after real traffic
through a real server (the bundled model escalating to an upstream, a pre-router skipping,
a tool call skipping the local tier, a cache hit, a stream, shadow checks), every metric any
panel queries is present, and the panels use the datasource the compose file provisions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess
from tests.support.surface import WEATHER

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cascade.json"
_METRIC = re.compile(r"\b((?:cascade|process)_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_sum", "_count")


def queried_metrics(dashboard: dict[str, object]) -> set[str]:
    names = set()
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", ()):
            names |= set(_METRIC.findall(target["expr"]))
    return names


@pytest.fixture(scope="module")
def traffic(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> Cascade:
    upstream = start_fake_upstream()
    cascade = start_cascade(
        f"""
tiers:
  small: {{type: llama_cpp, n_ctx: 2048, price: {{input_per_1m: 0.01, output_per_1m: 0.02}}}}
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: capable-model
    price: {{input_per_1m: 1.0, output_per_1m: 3.0}}
routes:
  auto:
    cascade: [{{tier: small, acceptance: {{threshold: 1.0}}}}, {{tier: large}}]
    cache: {{store: memory}}
    shadow: {{rate: 1.0, usd_per_day: 1.0}}
  routed:
    classifier: {{model: prerouter, threshold: 1.0}}
    cascade: [{{tier: small, acceptance: {{threshold: 0.0}}}}, {{tier: large}}]
""",
    )
    ask = [{"role": "user", "content": "What is 2 + 2?"}]
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x", max_retries=0) as client:
        for _ in range(2):  # escalated, then a cache hit
            client.chat.completions.create(model="auto", messages=ask, temperature=0, max_tokens=8)
        for chunk in client.chat.completions.create(
            model="auto", messages=ask, max_tokens=8, stream=True
        ):
            assert chunk is not None
        client.chat.completions.create(model="routed", messages=ask, max_tokens=8)
        client.chat.completions.create(model="auto", messages=ask, tools=[WEATHER], max_tokens=8)
    return cascade


def test_every_metric_the_dashboard_queries_is_served(traffic: Cascade) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = queried_metrics(dashboard)
    assert len(wanted) >= 25
    text = requests.get(f"{traffic.url}/metrics", timeout=10).text
    served = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    missing = sorted(
        name
        for name in wanted
        if name not in served and not any(name + suffix in served for suffix in _SUFFIXES)
    )
    assert missing == [], f"queried by the dashboard but not in /metrics: {missing}"


def test_the_dashboards_panels_use_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    (source,) = provisioned["datasources"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert {panel["datasource"]["uid"] for panel in panels} == {source["uid"]}
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} == {source["uid"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
