"""No client can grow what the gateway stores or reports, or reach past its key: client
strings are bounded in records and error bodies, metric labels come from bounded sets, a
key's model list covers where a rule sends a request, and ledger files are private."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.ledger.base import Entry
from router.ledger.jsonl import JSONLSink
from router.ledger.sqlite import SQLiteSink
from tests.support.app import CHAT, Serve, record_of
from tests.support.fakes import FakeBackend, Script

LARGE = """
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
limits: {max_body_bytes: 4194304}
"""


async def test_a_megabyte_user_and_model_leave_bounded_records_and_errors(serve: Serve) -> None:
    large = FakeBackend("large", [Script("ok", None)])
    client, ledger = await serve(LARGE, large=large)
    huge = "u" * 1_048_576
    kind = {"Content-Type": "application/json"}

    async def post(body: dict[str, object]) -> Any:
        data = io.BytesIO(orjson.dumps(body))  # (aiohttp warns of a large body as bytes)
        return await client.post("/v1/chat/completions", data=data, headers=kind)

    answered = await post({**CHAT, "user": huge})
    unknown = await post({**CHAT, "model": huge})
    assert (answered.status, unknown.status) == (200, 404)
    body = await unknown.read()
    assert len(body) < 1024 and b"more characters" in body
    await client.close()
    for response in (answered, unknown):
        record = record_of(ledger, response.headers["x-request-id"])
        assert len(orjson.dumps(record)) < 8192  # README: a record's client strings are bounded
    assert record_of(ledger, answered.headers["x-request-id"])["user"].startswith("u" * 256 + "…")


async def test_metric_series_do_not_grow_with_what_clients_send(serve: Serve) -> None:
    """Random models, tags and feature combinations: as many series after 1,000 requests as
    after the first 40 (skips are counted once per missing feature, a bounded set)."""
    small = FakeBackend("small", [Script("maybe", None)], local=True)
    large = FakeBackend("large", [Script("ok", None)])
    client, _ = await serve(LARGE, small=small, large=large)
    rng = random.Random(7)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    tool = {"type": "function", "function": {"name": "f"}}

    async def mixed(count: int) -> None:
        for _ in range(count):
            body: dict[str, object] = {**CHAT, "model": rng.choice(["auto", f"m{rng.random()}"])}
            if rng.random() < 0.5:
                body["tools"] = [tool]
            if rng.random() < 0.5:
                body["messages"] = [{"role": "user", "content": [image]}]
            if rng.random() < 0.5:
                body["n"] = 2
            tags = ",".join(f"t{rng.randint(0, 10**6)}" for _ in range(3))
            await client.post("/v1/chat/completions", json=body, headers={"x-cascade-tags": tags})

    def series(text: str) -> set[str]:
        return {line.split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}

    await mixed(40)  # every combination of the three features has come up by now
    before = series(await (await client.get("/metrics")).text())
    await mixed(1000)
    after = series(await (await client.get("/metrics")).text())
    assert after == before
    assert not [s for s in after if "image, " in s or ", tools" in s]


def _keyed(models: str) -> str:
    digest = hashlib.sha256(b"sk-narrow").hexdigest()
    return f"""
tiers:
  small: {{type: llama_cpp}}
  large: {{type: openai, model: m}}
routes:
  auto: {{cascade: [{{tier: small, acceptance: {{threshold: 0.5}}}}, {{tier: large}}]}}
  large-only: {{cascade: [{{tier: large}}]}}
teams:
  search: {{keys: [{{sha256: {digest}, models: [{models}]}}]}}
rules:
  - {{name: critical, match: {{tags: [critical]}}, route: large-only}}
"""


@pytest.mark.parametrize("models", ["auto", "auto, large-only"])
async def test_a_rule_cannot_take_a_key_past_its_model_list(serve: Serve, models: str) -> None:
    large = FakeBackend("large", [Script("ok", None)])
    client, _ = await serve(_keyed(models), large=large)
    headers = {"Authorization": "Bearer sk-narrow", "x-cascade-tags": "critical"}
    response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    if models == "auto":
        assert response.status == 403
        error = (await response.json())["error"]
        assert error["code"] == "model_not_allowed" and "'large-only'" in error["message"]
        assert large.calls == 0
    else:
        assert response.status == 200 and response.headers["x-cascade-route"] == "large-only"


async def test_ledger_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        sqlite = SQLiteSink(tmp_path / "ledger.db")
        jsonl = JSONLSink(tmp_path / "ledger.jsonl")
        entry = Entry("r1", "2026-12-05T10:00:00.000Z", "team", json.dumps({"a": 1}).encode())
        await sqlite.write([entry])
        await jsonl.write([entry])
        await asyncio.gather(sqlite.aclose(), jsonl.aclose())
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in os.scandir(tmp_path)}
    assert {"ledger.db", "ledger.jsonl"} <= set(modes)  # and SQLite's -wal / -shm, if left
    assert set(modes.values()) == {0o600}, modes
