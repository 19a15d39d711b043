"""Server limits at their boundaries, over raw sockets against a real `cascade serve`: the
request head timeout (slow senders), the body timeout, connections per client address."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cascade import Cascade, StartCascade

POLICY = """
tiers: {large: {type: openai, model: m}}
routes: {auto: {cascade: [{tier: large}]}}
"""
Connect = Callable[[], socket.socket]
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def limited(start_cascade: StartCascade) -> Cascade:
    return start_cascade(
        POLICY,
        env={
            "CASCADE_HEADER_TIMEOUT_S": "1",
            "CASCADE_BODY_TIMEOUT_S": "1",
            "CASCADE_MAX_CONNECTIONS_PER_IP": "3",
        },
    )


@pytest.fixture
def connect(limited: Cascade) -> Iterator[Connect]:
    opened: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", limited.server.port), timeout=10)
        opened.append(sock)
        return sock

    yield make
    for sock in opened:
        sock.close()


def response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_request_head_sent_in_time_is_served(connect: Connect) -> None:
    sock = connect()
    body = b"{}"
    time.sleep(0.5)  # within the 1 s head timeout
    sock.sendall(HEAD + b"Content-Length: 2\r\n\r\n" + body)
    status, error = response(sock)
    assert status == 400 and error["error"]["param"] == "model"  # reached the handler


def test_a_head_trickled_past_the_timeout_is_closed(connect: Connect) -> None:
    sock = connect()
    started = time.monotonic()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
    sock.settimeout(0.1)
    hung_up = False
    while not hung_up and time.monotonic() - started < 5:
        try:
            sock.sendall(b"X-Slow: a\r\n")  # a header line every 0.1 s: never a whole head
            hung_up = sock.recv(1) == b""
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed by the server
            hung_up = True
    assert hung_up and time.monotonic() - started < 3


def test_a_body_not_sent_in_time_is_408(connect: Connect) -> None:
    sock = connect()
    sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"model": ')
    started = time.monotonic()
    status, error = response(sock)
    assert status == 408 and error["error"]["code"] == "request_timeout"
    assert 0.9 <= time.monotonic() - started < 3


def test_connections_per_address_are_limited(connect: Connect, limited: Cascade) -> None:
    kept = [connect() for _ in range(3)]
    time.sleep(0.2)
    extra = connect()
    assert closed_by_server(extra)
    for sock in kept:  # the three within the limit are served
        sock.sendall(HEAD + b"Content-Length: 2\r\n\r\n{}")
        assert response(sock)[0] == 400
    for sock in kept:
        sock.close()
    time.sleep(0.2)
    again = connect()  # slots freed when they closed
    again.sendall(HEAD + b"Content-Length: 2\r\n\r\n{}")
    assert response(again)[0] == 400


def test_the_limits_are_settings(tmp_path: Path) -> None:
    from router.settings import Settings

    settings = Settings.from_env({"CASCADE_MAX_CONNECTIONS_PER_IP": "0"})
    assert settings.max_connections_per_ip == 0  # 0: no limit
