"""Two teams share a remote tier of 8 slots: one sends 200 requests at once, the other one
every 100 ms. The second team's requests wait at most about one request's service time for a
slot (the first team's wait many), and every attempt records how long it waited."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from router.backends.openai_http import OpenAIHTTPBackend, OpenAITier
from tests.support.app import CHAT, Serve, record_of
from tests.support.fake_upstream import Faults, create_app
from tests.support.keys import team_keys

KEYS = {"burst": "sk-burst-team", "steady": "sk-steady-team"}


def _policy() -> str:
    teams = team_keys(KEYS)
    return f"""
tiers:
  small: {{type: llama_cpp}}
  large: {{type: openai, model: m}}
routes:
  remote: {{cascade: [{{tier: large}}]}}
teams:
{teams}
"""


@pytest.fixture
async def shared_tier() -> AsyncIterator[OpenAIHTTPBackend]:
    server = TestServer(create_app(Faults(delay_ms=40)))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        spec = OpenAITier(
            type="openai",
            api_base=str(server.make_url("/v1")),
            model="fake",
            max_concurrency=8,
            max_queue=1000,
        )
        yield OpenAIHTTPBackend("large", spec, session)
    await server.close()


async def test_a_burst_does_not_starve_another_team(
    serve: Serve, shared_tier: OpenAIHTTPBackend
) -> None:
    client, ledger = await serve(_policy(), large=shared_tier)
    ask = {**CHAT, "model": "remote"}

    async def send(team: str) -> str:
        headers = {"Authorization": f"Bearer {KEYS[team]}"}
        response = await client.post("/v1/chat/completions", json=ask, headers=headers)
        assert response.status == 200, await response.text()
        return response.headers["x-request-id"]

    async def steady() -> list[str]:
        found = []
        for _ in range(6):
            await asyncio.sleep(0.1)
            found.append(await send("steady"))
        return found

    burst = [asyncio.create_task(send("burst")) for _ in range(200)]
    steady_ids = await steady()
    burst_ids = await asyncio.gather(*burst)
    await client.close()
    attempts = {
        team: [record_of(ledger, rid)["attempts"][0] for rid in ids]
        for team, ids in (("burst", burst_ids), ("steady", steady_ids))
    }
    service = statistics.median(a["latency_ms"] - a["queued_ms"] for a in attempts["burst"])
    burst_wait = statistics.median(a["queued_ms"] for a in attempts["burst"])
    steady_wait = max(a["queued_ms"] for a in attempts["steady"])
    print(f"service {service:.1f} ms; waits: burst {burst_wait:.1f}, steady {steady_wait:.1f}")
    assert burst_wait > 5 * service  # the tier was saturated by the burst
    assert steady_wait <= 2 * service, (steady_wait, service)
