"""The response cache through real `cascade serve` processes: a deterministic request is
answered once by the upstream and then from a Redis shared by two servers (streamed or
not, by the openai SDK), teams keep their own entries unless the policy shares them, the
client's `Cache-Control: no-cache` goes to the upstream, a Redis outage leaves serving
intact, and the ledger and `cascade audit` show the hits and what they saved. The local
tier's answers (the bundled model, in-process) are cached too (CASCADE_CACHE=memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.support.cascade import Cascade, StartCascade, audit_report, policy_yaml, read_ledger
from tests.support.keys import team_keys
from tests.support.processes import ServerProcess
from tests.support.processes import start_cascade as start_cascade_process
from tests.support.redis_server import RedisServer

ASK = [{"role": "user", "content": "Name a colour."}]
KEYS = {team: f"sk-{team}-cache-key" for team in ("red", "blue")}


def _policy(upstream: ServerProcess, *, shared: bool = False) -> str:
    keys = team_keys(KEYS)
    return f"""
tiers:
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: capable-model
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
  fresh: {{cascade: [{{tier: large}}], cache: {{store: off}}}}
teams:
{keys}
cache: {{shared_across_teams: {str(shared).lower()}, redis_timeout_ms: 200, redis_retry_s: 1}}
"""


def upstream_calls(upstream: ServerProcess) -> int:
    return int(requests.get(f"{upstream.url}/_fault", timeout=5).json()["requests"])


class Servers:
    """Two cascade servers on one policy and one Redis cache, each with its own ledger."""

    def __init__(self, folder: Path, policy: str, redis: RedisServer) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "policy.yaml").write_text(policy)
        self.ledgers = [f"sqlite:///{folder / f'ledger{i}.db'}" for i in range(2)]
        env = {"CASCADE_CACHE": redis.url}
        self.processes = [
            start_cascade_process(
                folder / "policy.yaml", ledger, folder / f"server{i}.log", env=env
            )
            for i, ledger in enumerate(self.ledgers)
        ]

    def client(self, index: int, team: str = "red") -> openai.OpenAI:
        url = f"{self.processes[index].url}/v1"
        return openai.OpenAI(base_url=url, api_key=KEYS[team], max_retries=0)

    def records(self) -> list[dict[str, Any]]:
        return [record for ledger in self.ledgers for record in read_ledger(ledger)]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def upstream(start_fake_upstream: Callable[..., ServerProcess]) -> ServerProcess:
    return start_fake_upstream()


@pytest.fixture
def servers(tmp_path: Path, upstream: ServerProcess, redis: RedisServer) -> Iterator[Servers]:
    found = Servers(tmp_path, _policy(upstream), redis)
    yield found
    found.stop()


def _ask(client: openai.OpenAI, *, stream: bool = False, **extra: Any) -> tuple[str, Any]:
    """(the answer's text, the response headers)."""
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="auto", messages=ASK, temperature=0, stream=True, **extra
        ) as response:
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
            )
            return text, response.headers
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, temperature=0, **extra
    )
    return raw.parse().choices[0].message.content or "", raw.headers


def test_a_repeated_request_is_answered_once_by_the_upstream_across_two_servers(
    servers: Servers, upstream: ServerProcess
) -> None:
    made, made_headers = _ask(servers.client(0))
    assert made_headers["x-cascade-cache"] == "miss" and upstream_calls(upstream) == 1
    for index, stream in [(1, False), (1, True), (0, True)]:  # the other server, both ways
        text, headers = _ask(servers.client(index), stream=stream)
        assert text == made
        assert headers["x-cascade-cache"] == "hit" and headers["x-cascade-tier"] == "large"
    assert upstream_calls(upstream) == 1
    text, headers = _ask(servers.client(1), extra_headers={"Cache-Control": "no-cache"})
    assert headers["x-cascade-cache"] == "bypass" and upstream_calls(upstream) == 2
    sampled = servers.client(1).chat.completions.with_raw_response.create(
        model="auto", messages=ASK, temperature=0.7
    )
    assert sampled.headers["x-cascade-cache"] == "skip" and upstream_calls(upstream) == 3
    fresh = servers.client(1).chat.completions.with_raw_response.create(
        model="fresh", messages=ASK, temperature=0
    )
    assert "x-cascade-cache" not in fresh.headers and upstream_calls(upstream) == 4


def test_teams_do_not_share_entries(servers: Servers, upstream: ServerProcess) -> None:
    _ask(servers.client(0, "red"))
    _, headers = _ask(servers.client(1, "blue"))
    assert headers["x-cascade-cache"] == "miss" and upstream_calls(upstream) == 2
    _, headers = _ask(servers.client(0, "blue"))
    assert headers["x-cascade-cache"] == "hit" and upstream_calls(upstream) == 2


def test_a_policy_may_share_entries_across_teams(
    tmp_path: Path, upstream: ServerProcess, redis: RedisServer
) -> None:
    shared = Servers(tmp_path, _policy(upstream, shared=True), redis)
    try:
        _ask(shared.client(0, "red"))
        _, headers = _ask(shared.client(1, "blue"))
    finally:
        shared.stop()
    assert headers["x-cascade-cache"] == "hit" and upstream_calls(upstream) == 1


def test_redis_down_leaves_serving_intact(
    tmp_path: Path, upstream: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = RedisServer(tmp_path_factory.mktemp("cache-redis"))
    own.start()
    servers = Servers(tmp_path, _policy(upstream), own)
    try:
        _ask(servers.client(0))
        own.stop()
        for stream in (False, True, False):
            text, headers = _ask(servers.client(1), stream=stream)
            assert text and headers["x-cascade-cache"] in ("error", "miss")
        assert upstream_calls(upstream) == 4  # every request answered by the upstream
        own.start()  # back (the entry made before the outage kept in its append-only file)
        deadline = time.monotonic() + 10
        while _ask(servers.client(1))[1]["x-cascade-cache"] != "hit":
            assert time.monotonic() < deadline, "the cache was not used again"
            time.sleep(0.2)
        log = servers.processes[1].log()
    finally:
        servers.stop()
        own.stop()
    assert "cache_unavailable" in log


def test_records_and_the_audit_show_hits_and_savings(
    servers: Servers, upstream: ServerProcess
) -> None:
    for index in (0, 1, 1):
        _ask(servers.client(index))
    servers.stop()  # the ledgers are flushed at shutdown
    records = sorted(servers.records(), key=lambda r: r["ts"])
    assert [r["cache"] for r in records] == ["miss", "hit", "hit"]
    made, hits = records[0], records[1:]
    assert made["cost_usd"] > 0 and not made["cache_hit"]
    for hit in hits:
        assert hit["cache_hit"] and hit["cost_usd"] == 0 and hit["attempts"] == []
        assert hit["cache_saved_usd"] == made["cost_usd"]
        assert (hit["final_tier"], hit["final_model"]) == ("large", made["final_model"])
    reports = [audit_report(ledger, "team", "route") for ledger in servers.ledgers]
    groups = [group for report in reports for group in report["groups"]]
    assert {tuple(group["key"].values()) for group in groups} == {("red", "auto")}
    assert sum(group["cache_hits"] for group in groups) == 2
    second = next(group for group in groups if group["cache_hits"] == 2)
    assert second["cache_hit_rate"] == 1.0
    assert second["cache_saved_usd"] == pytest.approx(2 * made["cost_usd"])
    assert second["cost_usd"] == 0


@pytest.fixture(scope="module")
def local(start_cascade: StartCascade, llama_server: ServerProcess) -> Cascade:
    """The bundled model in-process before llama.cpp's server; CASCADE_CACHE=memory."""
    return start_cascade(policy_yaml(f"{llama_server.url}/v1"), env={"CASCADE_CACHE": "memory"})


@pytest.mark.parametrize("stream", [False, True])
def test_the_local_tiers_answers_are_cached_by_the_environments_contract(
    local: Cascade, stream: bool
) -> None:
    with openai.OpenAI(base_url=f"{local.url}/v1", api_key="sk-x", max_retries=0) as client:
        question = [{"role": "user", "content": f"Say yes. ({stream})"}]
        answers = []
        for streamed in (stream, not stream):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=question, temperature=0, max_tokens=8, stream=streamed
            )
            if streamed:
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            else:
                text = raw.parse().choices[0].message.content or ""
            answers.append((text, raw.headers["x-cascade-cache"], raw.headers["x-request-id"]))
    (made, first, made_id), (served, second, served_id) = answers
    assert (first, second) == ("miss", "hit") and served == made
    record = local.record(served_id)
    assert record["cache_hit"] and record["final_tier"] == local.record(made_id)["final_tier"]
