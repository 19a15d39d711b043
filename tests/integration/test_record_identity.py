"""No client can remove, replace or forge a record: on every sink, duplicated and guessed
ids each leave their own record under the gateway's own id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.cascade import StartCascade
from tests.support.processes import ServerProcess
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("sink", ["sqlite", "jsonl", "redis"])
def test_duplicated_and_guessed_ids_leave_every_record(
    sink: str,
    tmp_path: Path,
    redis_url: str,
    start_cascade: StartCascade,
    start_fake_upstream: Callable[..., ServerProcess],
) -> None:
    fake = start_fake_upstream()
    ledger = {
        "sqlite": f"sqlite:///{tmp_path / 'ledger.db'}",
        "jsonl": f"jsonl:///{tmp_path / 'ledger.jsonl'}",
        "redis": f"{redis_url}?stream=identity-{tmp_path.name}",
    }[sink]
    cascade = start_cascade(
        f"""
tiers: {{large: {{type: openai, api_base: "{fake.url}/v1", model: fake}}}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
""",
        ledger=ledger,
    )

    def ask(headers: dict[str, str]) -> str:
        response = requests.post(
            f"{cascade.url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200
        return response.headers["x-request-id"]

    first = ask({"x-request-id": "dup-1"})
    ids = [first] + [ask({"x-request-id": "dup-1"}) for _ in range(4)]
    # a client that learned another request's id and sends it, in either header
    ids += [ask({"x-request-id": first}), ask({"x-client-request-id": first})]
    # an invalid request claiming the id of the next paid one cannot pre-empt its record
    requests.post(
        f"{cascade.url}/v1/chat/completions", json={}, headers={"x-request-id": "next"}, timeout=30
    )
    ids.append(ask({"x-request-id": "next"}))
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        assert cascade.record(request_id)["status"] == "ok"
    original = cascade.record(first)
    assert original["client_request_id"] == "dup-1" and original["attempts"]
    assert sum(r["client_request_id"] == first for r in cascade.records()) == 2
