"""`cascade serve --workers 2` supervised: a worker killed with SIGKILL (as the OOM killer
would) is replaced — logged, and counted in /readyz and /metrics — and the server keeps
serving on two workers; SIGTERM to the parent stops them all."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.cascade import read_ledger
from tests.support.load import Load
from tests.support.processes import ServerProcess
from tests.support.processes import start_cascade as start_cascade_process

ASK = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}


def worker_pids(url: str, tries: int = 200) -> set[int]:
    """The pids that answer /readyz (connections spread over the workers)."""
    pids = set()
    for _ in range(tries):
        with requests.Session() as fresh:  # a new connection each time
            pids.add(fresh.get(f"{url}/readyz", timeout=5).json()["pid"])
    return pids


def _workers(tmp_path: Path, upstream: ServerProcess, count: int) -> ServerProcess:
    """`cascade serve --workers count` of one remote tier, with a SQLite ledger."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers: {{large: {{type: openai, api_base: "{upstream.url}/v1", model: m}}}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
""")
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    return start_cascade_process(policy, ledger, tmp_path / "server.log", "--workers", str(count))


def test_a_killed_worker_is_replaced_and_serving_goes_on(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    server = _workers(tmp_path, start_fake_upstream(), 2)
    try:
        deadline = time.monotonic() + 60  # the server is ready when one worker is
        while len(before := worker_pids(server.url, tries=40)) < 2:
            assert time.monotonic() < deadline, f"one worker never came up: {before}"
            time.sleep(0.2)
        victim = next(iter(before))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                after = worker_pids(server.url, tries=60)
            except requests.RequestException:
                after = set()
            if len(after) == 2 and victim not in after:
                break
            assert time.monotonic() < deadline, f"not replaced: {after}"
            time.sleep(0.2)
        replaced = next(iter(after - before))
        assert requests.post(f"{server.url}/v1/chat/completions", json=ASK, timeout=10).ok
        states = {}
        for _ in range(200):  # each worker says what it knows
            with requests.Session() as fresh:
                body = fresh.get(f"{server.url}/readyz", timeout=5).json()
            states[body["pid"]] = body["workers_replaced"]
            if len(states) == 2:
                break
        assert states[replaced] == 1
        assert '"worker_replaced"' in server.log() and f'"pid":{victim}' in server.log()
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    assert server.process.returncode == 0
    for pid in after:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def _children(pid: int) -> set[int]:
    """The supervisor's processes (multiprocessing's resource tracker aside)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in command:
                found.add(int(entry.name))
    return found


def _two_workers(url: str) -> set[int]:
    deadline = time.monotonic() + 60
    while len(found := worker_pids(url, tries=40)) < 2:
        assert time.monotonic() < deadline, f"two workers never came up: {found}"
        time.sleep(0.2)
    return found


def _ledger_ids(ledger: str) -> set[str]:
    return {record["request_id"] for record in read_ledger(ledger)}


@pytest.fixture
def node(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> Iterator[tuple[ServerProcess, str]]:
    """`--workers 2` with a SQLite ledger: two workers and the node's ledger writer."""
    upstream = start_fake_upstream()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers: {{large: {{type: openai, api_base: "{upstream.url}/v1", model: m, max_concurrency: 64}}}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
""")
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = start_cascade_process(
        policy, ledger, tmp_path / "server.log", "--workers", "2",
        env={"CASCADE_MAX_CONNECTIONS_PER_IP": "0"},
    )  # fmt: skip
    try:
        yield server, ledger
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)


def test_a_worker_killed_under_load_fails_only_its_requests_in_flight(
    node: tuple[ServerProcess, str],
) -> None:
    server, ledger = node
    workers = _two_workers(server.url)
    writer = _children(server.process.pid) - workers
    load = Load(server.url, clients=6, pause_s=0.002).start()
    try:
        time.sleep(1.5)
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(2.5)
    finally:
        load.stop()
    after = _two_workers(server.url)
    assert victim not in after
    # a client whose connection was on the killed worker sees one broken request at most
    assert len(load.errors) <= load.clients, load.errors
    assert all("Error" in error for error in load.errors), load.errors  # no HTTP error status
    answered = {request_id: at for at, request_id in load.received}
    assert len(answered) > 200
    server.process.send_signal(signal.SIGTERM)  # the rest of the records reach the writer
    server.process.wait(timeout=60)
    lost = set(answered) - _ledger_ids(ledger)
    # what the killed worker had not handed to the writer yet: answers of the last moments
    assert all(killed_at - 0.5 <= answered[request_id] <= killed_at + 0.1 for request_id in lost)
    assert len(lost) <= 50, len(lost)
    assert len(writer) == 1  # the node's one ledger writer, beside the two workers


def test_the_ledger_writer_killed_under_load_loses_nothing(
    node: tuple[ServerProcess, str],
) -> None:
    server, ledger = node
    workers = _two_workers(server.url)
    (writer,) = _children(server.process.pid) - workers
    load = Load(server.url, clients=4, pause_s=0.002).start()
    try:
        time.sleep(1.0)
        os.kill(writer, signal.SIGKILL)
        time.sleep(2.0)  # the workers spool; the writer is replaced; the spools replay
    finally:
        load.stop()
    assert load.errors == []
    deadline = time.monotonic() + 30
    while (replaced := _children(server.process.pid) - workers - {writer}) == set():
        assert time.monotonic() < deadline, "the ledger writer was not replaced"
        time.sleep(0.1)
    assert '"ledger_writer_replaced"' in server.log()
    answered = {request_id for _, request_id in load.received}
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    assert server.process.returncode == 0
    assert answered and answered <= _ledger_ids(ledger)
    assert replaced


def _requests_counted(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("cascade_requests_total{")
    )


def test_one_scrape_of_three_workers_counts_every_workers_requests(
    tmp_path: Path, start_fake_upstream: Callable[..., ServerProcess]
) -> None:
    """`--workers 3`: whichever worker a scrape reaches, /metrics sums the counters of all
    three (each serves its own on a private socket), and gauges keep one series per worker."""
    server = _workers(tmp_path, start_fake_upstream(), 3)
    try:
        deadline = time.monotonic() + 90
        while len(workers := worker_pids(server.url, tries=40)) < 3:
            assert time.monotonic() < deadline, f"three workers never came up: {workers}"
            time.sleep(0.2)
        for _ in range(60):
            with requests.Session() as fresh:  # a new connection: any worker
                fresh.post(f"{server.url}/v1/chat/completions", json=ASK, timeout=10)
        scrapes = []
        for _ in range(6):  # different connections, likely different workers: all the same
            with requests.Session() as fresh:
                scrapes.append(fresh.get(f"{server.url}/metrics", timeout=10).text)
        assert {_requests_counted(text) for text in scrapes} == {60.0}
        memory = [
            line for line in scrapes[0].splitlines() if line.startswith("process_resident_memory")
        ]
        assert {line.split('worker="')[1].split('"')[0] for line in memory} == {
            str(pid) for pid in workers
        }
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
