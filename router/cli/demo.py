"""`cascade demo`: the cascade working on this machine, nothing configured.

Starts the bundled model behind llama.cpp's OpenAI server as a real large tier, `cascade
serve` with the default policy in front of it (the response cache on, the ledger in a file),
sends a handful of prompts that show each way a request can go — kept by the local tier,
escalated, sent past it by the pre-router, answered from the cache — and prints what each
answer's headers said and why, then one record's story. Both tiers are the same 135M model,
so this shows the plumbing (routes, records, costs), not better answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Prompts chosen (and tested, tests/integration/test_demo.py) for what the default policy
# does with them on the bundled model at temperature 0.
PROMPTS = (
    (
        "kept by the local tier",
        "Which of these is not part of an atom?\nA. proton\nB. isotope\nC. nucleus\n"
        "D. electron\nAnswer with the letter of the correct option.",
    ),
    (
        "escalated to large",
        "The period of a 10-Hz wave is\nA. 1/10 s\nB. 1.0 s\nC. 10 s\nD. None of these\n"
        "Answer with the letter of the correct option.",
    ),
    ("pre-router skip", "What is 2 + 2?"),
    (
        "cache hit (asked again)",
        "Which of these is not part of an atom?\nA. proton\nB. isotope\nC. nucleus\n"
        "D. electron\nAnswer with the letter of the correct option.",
    ),
)
LARGE_ALIAS = "large-local"


@dataclass(slots=True)
class Answer:
    what: str
    prompt: str
    request_id: str
    tier: str
    reason: str
    escalations: str
    text: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} (its log is above)")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http, ours
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s")


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # cascade flushes its ledger on the way out
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ask(url: str, prompt: str, what: str) -> Answer:
    body = json.dumps(
        {
            "model": "auto",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 24,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - http, the server this started
        f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        headers = response.headers
        reply = json.loads(response.read())
    text = (reply["choices"][0]["message"].get("content") or "").strip().replace("\n", " ")
    return Answer(
        what=what,
        prompt=prompt,
        request_id=headers.get("x-request-id", ""),
        tier=headers.get("x-cascade-tier", ""),
        reason=headers.get("x-cascade-reason", ""),
        escalations=headers.get("x-cascade-escalations", "0"),
        text=text[:60] + ("…" if len(text) > 60 else ""),
    )


def _print(answers: list[Answer]) -> None:
    for answer in answers:
        lines = answer.prompt.splitlines()
        shown = lines[0] + (" [A-D options]" if len(lines) > 1 else "")
        print(f"\n{answer.what}: {shown!r}")
        print(f"  x-request-id: {answer.request_id}")
        print(f"  x-cascade-tier: {answer.tier}   x-cascade-escalations: {answer.escalations}")
        print(f"  x-cascade-reason: {answer.reason}")
        print(f"  answer: {answer.text}")


def run(args: argparse.Namespace) -> int:
    from router.backends.local_llama import bundled_model_path

    try:
        import llama_cpp.server  # noqa: F401  (the large tier's server)
    except ImportError:
        print(
            "cascade demo: needs llama-cpp-python's server extra "
            "(pip install 'llama-cpp-python[server]'; `make demo` installs it)",
            file=sys.stderr,
        )
        return 1
    policy = Path(args.policy)
    if not policy.is_file():
        print(f"cascade demo: no policy file {policy}", file=sys.stderr)
        return 1
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    ledger_file = work / "ledger.db"
    ledger_file.unlink(missing_ok=True)
    ledger = f"sqlite:///{ledger_file}"  # var/demo: relative to here, as the default ledger
    large_port = _free_port()
    port = args.port or _free_port()
    env = dict(os.environ)
    env.update(
        CASCADE_LARGE_API_BASE=f"http://127.0.0.1:{large_port}/v1",
        CASCADE_LARGE_MODEL=LARGE_ALIAS,
        CASCADE_CACHE="memory",
        CASCADE_LEDGER=ledger,
    )
    large_argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(bundled_model_path()),
        "--port",
        str(large_port),
        "--n_ctx",
        "2048",
        "--chat_format",
        "chatml",
        "--model_alias",
        LARGE_ALIAS,
    ]
    serve_argv = [sys.executable, "-m", "router", "serve", "--policy", str(policy)]
    serve_argv += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    print(f"starting the large tier (the bundled model, llama.cpp server on :{large_port}) ...")
    try:
        # llama_cpp.server reads HOST and PORT from the environment over its flags
        large_env = {k: v for k, v in env.items() if k not in ("HOST", "PORT")}
        with _process(large_argv, large_env, work / "large.log") as large:
            _wait(f"http://127.0.0.1:{large_port}/v1/models", large, "the large tier", 120)
            print(f"starting cascade serve --policy {policy} on {url} ...")
            with _process(serve_argv, env, work / "cascade.log") as serve:
                _wait(f"{url}/readyz", serve, "cascade", 120)
                answers = [_ask(url, prompt, what) for what, prompt in PROMPTS]
                _print(answers)
                if args.keep:
                    print(f"\ncascade is serving on {url} (Ctrl-C stops both servers)")
                    with contextlib.suppress(KeyboardInterrupt):
                        serve.wait()
    except (RuntimeError, urllib.error.URLError, OSError) as exc:
        print(f"cascade demo: {exc} (logs in {work})", file=sys.stderr)
        return 1
    _story(ledger, next((a for a in answers if a.escalations != "0"), answers[0]))
    print(
        f"\nthe ledger: {ledger}\n"
        f"  cascade ledger show {answers[0].request_id} --ledger {ledger}\n"
        f"  cascade ledger tail --ledger {ledger}\n"
        f"  cascade audit --ledger {ledger}"
    )
    return 0


def _story(ledger: str, answer: Answer) -> None:
    from router.ledger import open_reader, parse_ledger_url
    from router.ledger.story import story

    reader = open_reader(parse_ledger_url(ledger))
    try:
        body = reader.record(answer.request_id)
    finally:
        reader.close()
    if body is not None:
        print(f"\nits record, as `cascade ledger show {answer.request_id}` tells it:\n")
        print(story(json.loads(body)))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="start the bundled model as a large tier beside cascade and show each route",
    )
    demo.add_argument("--policy", default="policies/default.yaml")
    demo.add_argument("--port", type=int, default=0, help="cascade's port (default: a free one)")
    demo.add_argument("--dir", default="var/demo", help="the ledger and both servers' logs")
    demo.add_argument("--keep", action="store_true", help="keep both servers until Ctrl-C")
    demo.set_defaults(run=run)
