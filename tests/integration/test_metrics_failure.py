"""A failure inside the metrics does not turn a served answer into a 500: the client gets
its answer, the ledger its record, and the log the error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from router.observe.metrics import Metrics
from router.records import DecisionRecord
from router.server.app import create_app
from router.server.state import METRICS
from router.settings import Settings
from tests.support.cascade import read_ledger
from tests.support.processes import ServerProcess


class BrokenMetrics(Metrics):
    def observe(self, record: DecisionRecord, seconds: float) -> None:
        raise RuntimeError("a bug in the metrics")


async def test_a_metrics_bug_does_not_fail_the_request(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    upstream = start_fake_upstream()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
"""
    )
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = create_app(
        Settings(policy_path=policy, ledger_url=ledger, spool_folder=tmp_path / "spool")
    )
    app[METRICS] = BrokenMetrics()
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert response.status == 200, await response.text()
        request_id = response.headers["x-request-id"]
        assert (await response.json())["choices"][0]["message"]["content"]
    (record,) = read_ledger(ledger)  # the app has shut down: the ledger is flushed
    assert (record["request_id"], record["status"]) == (request_id, "ok")
