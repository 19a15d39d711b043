"""Hot reload under load: valid changes swap in, invalid ones are rejected, nothing fails."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import ServerProcess, start_cascade

RELOADS = 100


def policy(upstream: str, index: int, *, valid: bool) -> bytes:
    # Every valid version differs; every fourth also changes the large tier's settings,
    # so its backend is rebuilt and the old one retired while requests are in flight.
    timeout = 30 + (index // 4) % 2
    route_tier = "large" if valid else "larg"
    return f"""\
version: 1
description: revision {index}
tiers:
  small: {{type: llama_cpp}}
  large: {{type: openai, api_base: "{upstream}/v1", model: fake, timeout_s: {timeout}}}
routes:
  auto: {{cascade: [{{tier: {route_tier}}}]}}
""".encode()


def write_atomically(path: Path, text: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(text)
    os.replace(temporary, path)


def admin(server: ServerProcess) -> dict[str, Any]:
    return dict(requests.get(f"{server.url}/admin/policy", timeout=10).json())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def serve(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess], *, poll_s: float
) -> tuple[ServerProcess, Path, ServerProcess]:
    """A fake upstream, a valid policy file on it, and cascade serving that file."""
    fake = start_fake_upstream()
    path = tmp_path / "policy.yaml"
    path.write_bytes(policy(fake.url, 0, valid=True))
    server = start_cascade(
        path,
        f"jsonl:///{tmp_path / 'decisions.jsonl'}",
        tmp_path / "server.log",
        env={"CASCADE_POLICY_POLL_S": str(poll_s)},
    )
    return fake, path, server


def test_reloads_under_load(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    # reloads come by SIGHUP here; the poll is made too slow to matter
    fake, path, server = serve(tmp_path, start_fake_upstream, poll_s=60)
    failures: list[str] = []
    served = [0]
    stop = threading.Event()
    checked: dict[str, str] = {}

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(
                    f"{server.url}/v1/chat/completions",
                    timeout=30,
                    json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                served[0] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        active = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for index in range(1, RELOADS + 1):
            valid = index % 2 == 0
            text = policy(fake.url, index, valid=valid)
            before = admin(server)["last_rejected"]
            write_atomically(path, text)
            server.process.send_signal(signal.SIGHUP)
            if valid:
                active = hashlib.sha256(text).hexdigest()[:12]
                wait_for(lambda v=active: admin(server)["version"] == v, f"version {active}")
            else:
                wait_for(lambda b=before: admin(server)["last_rejected"] != b, "the rejection")
                state = admin(server)
                assert state["version"] == active  # the last good policy still serves
                assert any("unknown tier 'larg'" in e for e in state["last_rejected"]["errors"])
            response = requests.post(
                f"{server.url}/v1/chat/completions",
                timeout=30,
                json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert response.headers["x-cascade-policy"] == active
            checked[response.headers["x-request-id"]] = active
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        server.stop()
    assert failures == []
    assert served[0] > RELOADS
    log = server.log()
    assert log.count('"event":"policy_rejected"') == RELOADS // 2
    assert log.count('"event":"policy_loaded"') == RELOADS // 2 + 1
    records = {
        r["request_id"]: r["policy_version"]
        for r in map(json.loads, (tmp_path / "decisions.jsonl").read_text().splitlines())
    }
    assert all(records[request_id] == version for request_id, version in checked.items())


def test_reload_by_polling_and_metrics(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    fake, path, server = serve(tmp_path, start_fake_upstream, poll_s=0.1)
    try:
        write_atomically(path, policy(fake.url, 1, valid=False))
        wait_for(lambda: admin(server)["last_rejected"] is not None, "the rejection")
        text = policy(fake.url, 2, valid=True)
        write_atomically(path, text)
        version = hashlib.sha256(text).hexdigest()[:12]
        wait_for(lambda: admin(server)["version"] == version, "the new version")
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert 'cascade_policy_reloads_total{result="applied"} 1.0' in metrics
        assert 'cascade_policy_reloads_total{result="rejected"} 1.0' in metrics
        response = requests.post(
            f"{server.url}/v1/chat/completions",
            timeout=30,
            json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert response.headers["x-cascade-policy"] == version
    finally:
        server.stop()


def test_a_policy_whose_model_will_not_load_is_rejected(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    fake, path, server = serve(tmp_path, start_fake_upstream, poll_s=0.1)
    try:
        before = admin(server)["version"]
        text = policy(fake.url, 1, valid=True).replace(
            b"small: {type: llama_cpp}", b"small: {type: llama_cpp, model_path: /nope.gguf}"
        )
        write_atomically(path, text)
        wait_for(lambda: admin(server)["last_rejected"] is not None, "the rejection")
        state = admin(server)
        assert state["version"] == before
        assert state["last_rejected"]["errors"][0].startswith("cannot start tiers")
        response = requests.post(
            f"{server.url}/v1/chat/completions",
            timeout=30,
            json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert response.status_code == 200
        assert response.headers["x-cascade-policy"] == before
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("shared", "field"),
    [
        (b"cap_store: redis", "shadow.cap_store"),
        (
            b"target_quality: 0.9, "
            b"autotune: {min_threshold: 0.1, max_threshold: 0.9, store: redis}",
            "shadow.autotune.store",
        ),
    ],
)
def test_shadow_state_shared_through_redis_without_redis_is_rejected(
    tmp_path: Path,
    start_fake_upstream: Callable[..., ServerProcess],
    shared: bytes,
    field: str,
) -> None:
    """A shadow cap or autotune window shared through Redis needs CASCADE_REDIS_URL: without
    it the change is refused (it would silently become per process) and the last good
    policy serves on."""
    fake, path, server = serve(tmp_path, start_fake_upstream, poll_s=0.1)
    try:
        before = admin(server)["version"]
        text = policy(fake.url, 1, valid=True).replace(
            b"  auto: {cascade: [{tier: large}]}\n",
            b"  auto:\n    cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]\n"
            b"    shadow: {rate: 0.1, usd_per_day: 1, " + shared + b"}\n",
        )
        write_atomically(path, text)
        wait_for(lambda: admin(server)["last_rejected"] is not None, "the rejection")
        state = admin(server)
        assert state["version"] == before
        assert state["last_rejected"]["errors"] == [
            f"routes.auto.{field} is redis but CASCADE_REDIS_URL is not set"
        ]
    finally:
        server.stop()
