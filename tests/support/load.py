"""Steady client load for durability tests: threads posting completions and noting, for every
answer they receive, its request id and when it arrived."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

BODY = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}


@dataclass
class Load:
    url: str
    clients: int = 4
    pause_s: float = 0.005
    timeout_s: float = 30.0
    received: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, request id)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(
                        f"{self.url}/v1/chat/completions", json=BODY, timeout=self.timeout_s
                    )
                except requests.RequestException as exc:
                    with self._lock:
                        self.errors.append(type(exc).__name__)
                    time.sleep(0.01)
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.received.append((time.monotonic(), response.headers["x-request-id"]))
                    else:
                        self.errors.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(self.pause_s)

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def ids(self) -> set[str]:
        with self._lock:
            return {request_id for _, request_id in self.received}
