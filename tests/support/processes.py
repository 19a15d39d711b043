"""Start real server processes for tests and wait until they answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A child process serving HTTP on 127.0.0.1:port; stopped with SIGTERM."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    args: list[str],
    port: int,
    ready_path: str,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    executable: str = sys.executable,
) -> ServerProcess:
    """Run `<executable> <args>` (this Python by default) and wait for GET ready_path → 200."""
    full_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [executable, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args} exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}{ready_path}", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{args} did not become ready in {timeout}s:\n{server.log()}")


def start_cascade(
    policy: Path,
    ledger: str,
    log_path: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    under: list[str] | None = None,
    timeout: float = 90.0,
) -> ServerProcess:
    """`cascade serve` on a free port writing to the `ledger` URL, spooling beside its log;
    `under` a tool that runs Python (e.g. valgrind and its options)."""
    port = free_port()
    args = ["-m", "router", "serve", "--policy", str(policy), "--port", str(port), *flags]
    return start(
        [*under[1:], sys.executable, *args] if under else args,
        port,
        "/readyz",
        log_path,
        env={
            "CASCADE_LEDGER": ledger,
            "CASCADE_LEDGER_SPOOL": str(log_path.parent / "spool"),
            **(env or {}),
        },
        timeout=timeout,
        executable=under[0] if under else sys.executable,
    )


def start_fake_upstream(log_path: Path, *flags: str) -> ServerProcess:
    """The fake OpenAI upstream (tests/support/fake_upstream.py) on a free port."""
    port = free_port()
    args = ["-m", "tests.support.fake_upstream", "--port", str(port), *flags]
    return start(args, port, "/v1/models", log_path)
