"""Auth through a real `cascade serve` with a keys file made by `cascade keys create`: every
kind of bad key is OpenAI's 401, a key reaches only its models, admin endpoints need an admin
key, keys are hot-reloaded (a revoked key is refused from then on), no key ever appears in a
log, record, metric or error body, and a server with no keys will not listen beyond loopback
unless told to."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess, free_port
from tests.support.processes import start_cascade as start_cascade_process

ASK = [{"role": "user", "content": "Hi"}]


def keys_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "router", "keys", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def create(keys: Path, *args: str) -> str:
    """A new key: the last line of `cascade keys create` (the contract scripts rely on)."""
    return keys_cli("create", "--keys", str(keys), *args).splitlines()[-1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "keys.yaml"


@pytest.fixture(scope="module")
def made(keys: Path) -> dict[str, str]:
    return {
        "search": create(keys, "--team", "search", "--tags", "batch"),
        "narrow": create(keys, "--team", "search", "--models", "auto"),
        "admin": create(keys, "--team", "ops", "--role", "admin"),
        "expired": create(keys, "--team", "search", "--expires", "2020-01-01T00:00:00Z"),
    }


@pytest.fixture(scope="module")
def cascade(
    start_cascade: StartCascade,
    start_fake_upstream: Callable[..., ServerProcess],
    keys: Path,
    made: dict[str, str],
) -> Cascade:
    upstream = start_fake_upstream()
    return start_cascade(
        f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: capable-model}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
""",
        env={"CASCADE_KEYS": str(keys), "CASCADE_POLICY_POLL_S": "0.1"},
    )


def sdk(cascade: Cascade, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cascade.url}/v1", api_key=key, max_retries=0)


def post(cascade: Cascade, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{cascade.url}/v1/chat/completions",
        json={"model": "auto", "messages": ASK},
        headers=headers,
        timeout=30,
    )


def test_a_valid_key_is_served_and_recorded_with_its_team(
    cascade: Cascade, made: dict[str, str]
) -> None:
    with sdk(cascade, made["search"]) as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=ASK)
    record = cascade.record(raw.headers["x-request-id"])
    assert (record["team"], record["tags"]) == ("search", ["batch"])
    assert record["key_id"] == hashlib.sha256(made["search"].encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key: send it in the Authorization header, after the word Bearer"),
        (
            {"Authorization": "Basic abc"},
            "malformed Authorization header: expected the word Bearer, a space and the key",
        ),
        ({"Authorization": "Bearer sk-cascade-unknown"}, "invalid API key"),
    ],
)
def test_missing_malformed_and_unknown_keys_are_a_401(
    cascade: Cascade, headers: dict[str, str], message: str
) -> None:
    response = post(cascade, headers)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_an_expired_key_is_a_401_the_sdk_raises_on(cascade: Cascade, made: dict[str, str]) -> None:
    with (
        sdk(cascade, made["expired"]) as client,
        pytest.raises(openai.AuthenticationError) as error,
    ):
        client.chat.completions.create(model="auto", messages=ASK)
    assert error.value.body["message"] == "this API key is expired"  # type: ignore[index]


def test_a_key_reaches_only_its_models(cascade: Cascade, made: dict[str, str]) -> None:
    with sdk(cascade, made["narrow"]) as client:
        assert [m.id for m in client.models.list()] == ["auto"]
        client.chat.completions.create(model="auto", messages=ASK)
        with pytest.raises(openai.PermissionDeniedError) as error:
            client.chat.completions.create(model="large", messages=ASK)
        assert error.value.body["code"] == "model_not_allowed"  # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model="large", input="x")


def test_admin_endpoints_and_metrics_need_an_admin_key(
    cascade: Cascade, made: dict[str, str]
) -> None:
    for path in ("/admin/policy", "/metrics"):
        assert requests.get(f"{cascade.url}{path}", timeout=10).status_code == 401
        user = {"Authorization": f"Bearer {made['search']}"}
        refused = requests.get(f"{cascade.url}{path}", headers=user, timeout=10)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_key_required")
        admin = {"Authorization": f"Bearer {made['admin']}"}
        assert requests.get(f"{cascade.url}{path}", headers=admin, timeout=10).status_code == 200
    for path in ("/healthz", "/readyz", "/openapi.json"):  # probes and the schema stay open
        assert requests.get(f"{cascade.url}{path}", timeout=10).status_code == 200


def test_metrics_opened_by_the_policy_need_no_key_while_auth_is_on(
    start_cascade: StartCascade, keys: Path, made: dict[str, str]
) -> None:
    """auth.metrics: open (a scraper with no key, as compose's Prometheus) while every
    completion still needs a key and /admin an admin key."""
    opened = start_cascade(
        """
tiers:
  large: {type: openai, api_base: "http://127.0.0.1:9/v1", model: m}
routes:
  auto: {cascade: [{tier: large}]}
auth: {metrics: open}
""",
        env={"CASCADE_KEYS": str(keys)},
    )
    assert requests.get(f"{opened.url}/metrics", timeout=10).status_code == 200
    assert requests.get(f"{opened.url}/admin/policy", timeout=10).status_code == 401
    user = {"Authorization": f"Bearer {made['search']}"}
    assert requests.get(f"{opened.url}/admin/policy", headers=user, timeout=10).status_code == 403
    assert post(opened, {}).status_code == 401


def wait_for_status(cascade: Cascade, key: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while post(cascade, {"Authorization": f"Bearer {key}"}).status_code != status:
        assert time.monotonic() < deadline, f"never {status}"
        time.sleep(0.1)


def test_keys_are_hot_reloaded_and_a_revoked_key_is_refused(cascade: Cascade, keys: Path) -> None:
    key = create(keys, "--team", "late")
    wait_for_status(cascade, key, 200)  # a key made while the server runs works
    listed = json.loads(keys_cli("list", "--keys", str(keys), "--json"))
    key_id = next(row["id"] for row in listed if row["team"] == "late")
    keys_cli("revoke", "--keys", str(keys), key_id)
    wait_for_status(cascade, key, 401)
    response = post(cascade, {"Authorization": f"Bearer {key}"})
    assert response.json()["error"]["message"] == "this API key is revoked"
    listed = json.loads(keys_cli("list", "--keys", str(keys), "--json"))
    assert next(row["state"] for row in listed if row["id"] == key_id) == "revoked"


def test_no_key_appears_in_logs_records_metrics_or_errors(
    cascade: Cascade, made: dict[str, str], keys: Path
) -> None:
    canary = create(keys, "--team", "canary")
    wait_for_status(cascade, canary, 200)
    wrong = canary[:-4] + "XXXX"
    bodies = [post(cascade, {"Authorization": f"Bearer {wrong}"}).text]
    admin = {"Authorization": f"Bearer {made['admin']}"}
    metrics = requests.get(f"{cascade.url}/metrics", headers=admin, timeout=10).text
    assert "cascade_auth_refusals" in metrics
    time.sleep(0.5)  # records are written in batches
    seen = [cascade.server.log(), json.dumps(cascade.records()), metrics, *bodies, keys.read_text()]
    for key in (canary, wrong, *made.values()):
        assert not any(key in text for text in seen)


def test_no_keys_and_an_open_address_refuses_to_start_unless_allowed(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "tiers: {large: {type: openai, model: m}}\nroutes: {auto: {cascade: [{tier: large}]}}\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "serve",
            "--policy",
            str(policy),
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no API keys are configured" in done.stderr
    server = start_cascade_process(
        policy,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tmp_path / "server.log",
        "--host",
        "0.0.0.0",
        "--allow-unauthenticated",
    )
    try:
        assert '"serving_without_auth"' in server.log()
    finally:
        server.stop()


def test_the_keys_file_holds_no_key(keys: Path, made: dict[str, str]) -> None:
    text = keys.read_text()
    assert not any(key in text for key in made.values())


def test_keys_create_warns_of_a_team_the_policy_does_not_define(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "tiers: {large: {type: openai, model: m}}\n"
        "routes: {auto: {cascade: [{tier: large}]}}\n"
        "teams: {search: {limits: {usd_per_day: 5}}}\n"
    )
    command = [sys.executable, "-m", "router", "keys", "create", "--keys", str(tmp_path / "k")]
    typo = subprocess.run(
        [*command, "--team", "serach", "--policy", str(policy)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "team 'serach' is not in" in typo.stderr and "did you mean 'search'?" in typo.stderr
    assert typo.stdout.strip().startswith("sk-")  # the key is still made, on its last line
    known = subprocess.run(
        [*command, "--team", "search"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "CASCADE_POLICY": str(policy)},
    )
    assert "warning" not in known.stderr
    strict = subprocess.run(
        [*command, "--team", "serach", "--policy", str(policy), "--strict"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert strict.returncode == 1 and strict.stdout == ""
    assert "did you mean 'search'?" in strict.stderr and "no key made" in strict.stderr
    listed = subprocess.run(
        [*command[:-3], "list", "--keys", str(tmp_path / "k"), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert [k["team"] for k in json.loads(listed.stdout)] == ["serach", "search"]
