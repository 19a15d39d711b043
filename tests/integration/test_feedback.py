"""POST /v1/feedback through real servers: two replicas on one Redis ledger (feedback on the
replica that did not serve the answer still finds whose it was), from the openai SDK's
`client.post` and from curl; another team's id refused, an unknown one 404; stored as its own
records, the request's record unchanged; counted by `cascade audit`. And the SQLite ledger's
index answers for a request another process recorded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import openai
import pytest

from router.ledger.owners import Owners
from router.ledger.targets import parse_ledger_url
from tests.support.cascade import Cascade, StartCascade, audit_report, read_ledger
from tests.support.keys import team_keys
from tests.support.processes import ServerProcess
from tests.support.redis_server import RedisServer

KEYS = {"alpha": "sk-alpha-feedback-0001", "beta": "sk-beta-feedback-0002"}


def _policy(upstream: str) -> str:
    teams = team_keys(KEYS)
    return (
        textwrap.dedent(f"""\
        tiers:
          small: {{type: llama_cpp}}
          large: {{type: openai, api_base: "{upstream}/v1", model: capable-model,
                  price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}
        routes:
          local: {{cascade: [{{tier: small, acceptance: {{method: mean_prob, threshold: 0.0}}}}]}}
          remote: {{cascade: [{{tier: large}}]}}
        default_route: local
        teams:
        """)
        + teams
        + "\n"
    )


@pytest.fixture(scope="module")
def replicas(
    start_cascade: StartCascade,
    start_fake_upstream: Callable[..., ServerProcess],
    redis: RedisServer,
) -> tuple[Cascade, Cascade]:
    policy = _policy(start_fake_upstream().url)
    ledger = redis.url
    return start_cascade(policy, ledger=ledger), start_cascade(policy, ledger=ledger)


def _client(cascade: Cascade, team: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cascade.url}/v1", api_key=KEYS[team], max_retries=0)


def _ask(cascade: Cascade, team: str, model: str) -> str:
    with _client(cascade, team) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=4
        )
    return raw.headers["x-request-id"]


def _curl(cascade: Cascade, key: str, body: object) -> tuple[int, Any]:
    headers = ["-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json"]
    data = ["-d", json.dumps(body)]
    found = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", f"{cascade.url}/v1/feedback", *headers, *data],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    text, _, status = found.stdout.rpartition("\n")
    return int(status), json.loads(text)


def test_feedback_is_stored_attributed_and_counted(replicas: tuple[Cascade, Cascade]) -> None:
    a, b = replicas
    local = _ask(a, "alpha", "local")  # served by A, in-process
    remote = _ask(a, "alpha", "remote")
    theirs = _ask(a, "beta", "local")
    before = {r["request_id"]: r for r in read_ledger(a.ledger) if "kind" not in r}

    # the SDK on the other replica: it finds whose answer it was in Redis
    with _client(b, "alpha") as client:
        said = client.post(
            "/feedback",
            body={"request_id": local, "score": 1.0, "source": "thumbs"},
            cast_to=object,
        )
        assert isinstance(said, dict)
        assert said["object"] == "feedback" and said["request_id"] == local
        assert said["verdict"] == "good" and said["id"].startswith("feedback-")
        with pytest.raises(openai.NotFoundError):
            client.post("/feedback", body={"request_id": "f" * 26, "label": "bad"}, cast_to=object)
        with pytest.raises(openai.BadRequestError):
            client.post("/feedback", body={"request_id": local, "score": 2}, cast_to=object)
        with pytest.raises(openai.PermissionDeniedError):
            client.post("/feedback", body={"request_id": theirs, "label": "good"}, cast_to=object)

    # curl, the batch form: each item's status; the caller's own are stored
    status, batch = _curl(
        a,
        KEYS["alpha"],
        {
            "feedback": [
                {"request_id": remote, "label": "thumbs_down", "comment": "wrong colour"},
                {"request_id": theirs, "label": "good"},
                {"request_id": "0" * 26, "score": 0.0},
            ]
        },
    )
    assert status == 200 and batch["stored"] == 1
    assert [item["status"] for item in batch["data"]] == ["stored", "forbidden", "not_found"]
    status, refused = _curl(a, KEYS["alpha"], {"feedback": [{"request_id": remote}]})
    assert status == 400 and refused["error"]["param"] == "feedback[0]"

    stored = [r for r in _wait_for(a, 2) if r.get("kind") == "feedback"]
    by_request = {r["feedback_of"]: r for r in stored}
    assert set(by_request) == {local, remote}  # nothing of another team's, nothing unknown
    assert by_request[local]["verdict"] == "good" and by_request[local]["local"] is True
    assert by_request[local]["route"] == "local" and by_request[local]["team"] == "alpha"
    assert by_request[remote]["verdict"] == "bad" and by_request[remote]["local"] is False
    assert by_request[remote]["final_tier"] == "large"
    assert by_request[remote]["comment"] == "wrong colour"
    after = {r["request_id"]: r for r in read_ledger(a.ledger) if "kind" not in r}
    assert after[local] == before[local] and after[remote] == before[remote]  # unchanged

    report = audit_report(a.ledger, "team")
    alpha = next(g for g in report["groups"] if g["key"]["team"] == "alpha")
    assert alpha["feedback"]["items"] == 2
    assert (alpha["feedback"]["good"], alpha["feedback"]["bad"]) == (1, 1)
    assert alpha["feedback"]["local"]["good"] == 1 and alpha["feedback"]["local"]["bad"] == 0
    assert alpha["local_quality_combined"]["judged"] == 1
    beta = next(g for g in report["groups"] if g["key"]["team"] == "beta")
    assert beta["feedback"] is None
    headline = next(t for t in report["headline"] if t["team"] == "alpha")
    assert headline["feedback"]["items"] == 2


def _wait_for(cascade: Cascade, count: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 5
    while True:
        records = read_ledger(cascade.ledger)
        if sum(r.get("kind") == "feedback" for r in records) >= count:
            return records
        assert time.monotonic() < deadline, "feedback records did not reach the ledger"
        time.sleep(0.05)


def test_a_sqlite_ledger_answers_for_a_request_another_process_recorded(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    cascade = start_cascade(_policy(start_fake_upstream().url))
    request_id = _ask(cascade, "beta", "remote")
    cascade.record(request_id)  # stored
    owners = Owners(0, parse_ledger_url(cascade.ledger))  # nothing recent: the ledger answers

    async def find() -> Any:
        try:
            return await owners.find(request_id), await owners.find("1" * 26)
        finally:
            await owners.aclose()

    found, missing = asyncio.run(find())
    assert missing is None
    assert (found.team, found.route, found.final_tier, found.local) == (
        "beta",
        "remote",
        "large",
        False,
    )


def test_the_cli_reads_feedback_in_the_audit_table(replicas: tuple[Cascade, Cascade]) -> None:
    a, _ = replicas
    table = subprocess.run(
        [sys.executable, "-m", "router", "audit", "--ledger", a.ledger],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "applications called" in table
