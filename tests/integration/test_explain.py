"""`cascade policy explain` prints what `cascade serve` then records."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess

# With keys configured every caller needs one: team "default" has its own.
KEYS = {"research": "sk-research-test", "support": "sk-support-test", "default": "sk-default-t"}
LONG = "Summarise the history of the printing press in Europe. " * 12
MULTIPLE_CHOICE = (
    "Which gas do plants absorb from the air?\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen\n"
    "D. Helium\nAnswer with the letter of the correct option."
)


def policy(upstream: str) -> str:
    digest = {team: hashlib.sha256(key.encode()).hexdigest() for team, key in KEYS.items()}
    return f"""
version: 1
default_route: auto
tiers:
  small: {{type: llama_cpp, price: {{input_per_1m: 0.01, output_per_1m: 0.02}}}}
  large: {{type: openai, api_base: "{upstream}/v1", model: fake,
          price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}
routes:
  auto:
    cascade:
      - {{tier: small, acceptance: {{method: mean_prob, threshold: 0.5}}}}
      - {{tier: large}}
  large-only:
    cascade: [{{tier: large}}]
  classified:
    classifier: {{model: prerouter, threshold: 0.1}}
    cascade:
      - {{tier: small, acceptance: {{method: learned, model: acceptance, threshold: 0.3}}}}
      - {{tier: large}}
teams:
  research: {{keys: [{{sha256: {digest["research"]}, tags: [notebook]}}]}}
  support: {{keys: [{{sha256: {digest["support"]}}}]}}
  default: {{keys: [{{sha256: {digest["default"]}}}]}}
rules:
  - {{name: critical, match: {{tags: [critical]}}, route: large-only}}
  - {{name: long-prompts, match: {{prompt_tokens: {{min: 100}}}}, route: large-only}}
  - {{name: research-notebooks, match: {{teams: [research], tags: [notebook]}},
     overrides: {{acceptance: {{small: {{method: min_prob, threshold: 0.2}}}}}}}}
  - {{name: support-lenient, match: {{teams: [support]}},
     overrides: {{acceptance: {{small: {{method: mean_prob, threshold: 0.3}}}}}}}}
  - {{name: unlikely-locally, route: large-only,
     match: {{models: [auto], classifier: {{model: prerouter, max: 0.031}}}}}}
"""


CASES = [
    # (team, tags header, model, prompt)
    ("default", "", "auto", "What is the capital of France?"),
    ("support", "", "auto", "How do I reset my password?"),
    ("research", "", "auto", "Name a prime number."),
    ("research", "critical", "auto", "Name a prime number."),
    ("default", "", "auto", LONG),
    ("support", "", "large-only", "Hello"),
    ("default", "critical", "small", "Hello"),  # a tier by name: rules do not apply
    ("default", "", "classified", "What is the capital of France?"),  # pre-router: skip small
    ("default", "", "classified", MULTIPLE_CHOICE),  # pre-router: start at small
    ("default", "", "auto", "Hello"),  # the pre-router scores it 0.030: rule unlikely-locally
]


@pytest.fixture(scope="module")
def served(
    start_cascade: StartCascade,
    tmp_path_factory: pytest.TempPathFactory,
    start_fake_upstream: Callable[..., ServerProcess],
) -> tuple[Cascade, Path]:
    text = policy(start_fake_upstream().url)
    path = tmp_path_factory.mktemp("explain") / "policy.yaml"
    path.write_text(text)
    return start_cascade(text), path


def explain(path: Path, team: str, tags: str, model: str, prompt: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "policy",
            "explain",
            "--policy",
            str(path),
            "--team",
            team,
            "--tags",
            tags,
            "--model",
            model,
            "--prompt",
            prompt,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize(("team", "tags", "model", "prompt"), CASES)
def test_explain_and_serve_agree(
    served: tuple[Cascade, Path], team: str, tags: str, model: str, prompt: str
) -> None:
    cascade, path = served
    # explain's --tags are all the request's tags: its key's and its header's
    key_tags = ["notebook"] if team == "research" else []
    told = explain(path, team, ",".join([*key_tags, tags] if tags else key_tags), model, prompt)
    headers = {"x-cascade-tags": tags} if tags else {}
    headers["Authorization"] = f"Bearer {KEYS[team]}"
    response = requests.post(
        f"{cascade.url}/v1/chat/completions",
        headers=headers,
        timeout=60,
        json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]},
    )
    assert response.status_code == 200, response.text
    record = cascade.record(response.headers["x-request-id"])
    assert record["team"] == team
    assert (record["rule"], record["route"]) == (told["rule"], told["route"])
    assert record["classifier"] == told["classifier"]  # same model, version and score
    if model == "classified":
        assert told["classifier"]["skipped_first_step"] is (prompt != MULTIPLE_CHOICE)
    if (model, prompt) == ("auto", "Hello"):
        assert told["rule"] == "unlikely-locally"
    steps = [step for step in told["plan"] if not step["skipped"]]
    first_attempt, first_step = record["attempts"][0], steps[0]
    assert first_attempt["tier"] == first_step["tier"]
    if first_step["acceptance"] is not None:
        assert first_attempt["confidence"]["method"] == first_step["acceptance"]["method"]
        assert first_attempt["confidence"]["threshold"] == first_step["acceptance"]["threshold"]
    planned = [step["tier"] for step in steps]
    assert [a["tier"] for a in record["attempts"]] == planned[: len(record["attempts"])]
    if first_attempt["tier"] == "small":
        assert first_attempt["prompt_tokens"] == told["prompt_tokens"]


def test_bad_tags_header_is_400(served: tuple[Cascade, Path]) -> None:
    cascade, _ = served
    response = requests.post(
        f"{cascade.url}/v1/chat/completions",
        timeout=60,
        headers={"x-cascade-tags": "ok, not ok!", "Authorization": f"Bearer {KEYS['default']}"},
        json={"model": "auto", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-cascade-tags"


def test_explain_shows_the_features_and_the_steps_they_skip() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "policy",
            "explain",
            "--policy",
            "policies/default.yaml",
            "--prompt",
            "weather?",
            "--features",
            "tools,image",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    explained = json.loads(result.stdout)
    assert explained["features"] == ["image", "tools"]
    assert [step["unsupported"] for step in explained["plan"]] == [["image", "tools"], []]
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "policy",
            "explain",
            "--policy",
            "policies/default.yaml",
            "--prompt",
            "x",
            "--features",
            "telepathy",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert wrong.returncode == 1 and "unknown features" in wrong.stderr


def test_explain_shows_a_teams_budget_and_the_plan_at_a_share_spent(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m, price: {output_per_1m: 1.0}}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
teams:
  thrifty:
    limits: {usd_per_day: 5.0}
    budget_routing: {degrade_at: 0.8, at_limit: local}
""")

    def at(share: str, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "router",
                "policy",
                "explain",
                "--policy",
                str(path),
                "--prompt",
                "Hi",
                "--team",
                "thrifty",
                "--budget-share",
                share,
                *more,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    calm = json.loads(at("0.5", "--json").stdout)
    assert calm["budget"]["decision"] == "ok"
    assert [step["tier"] for step in calm["plan"]] == ["small", "large"]
    tight = json.loads(at("0.85", "--json").stdout)
    assert tight["budget"]["decision"] == "degraded"
    assert [step["tier"] for step in tight["plan"]] == ["small"]
    assert "at 85% spent: degraded" in at("0.85").stdout
    assert json.loads(at("1.0", "--json").stdout)["budget"]["decision"] == "local_only"


def test_explain_with_a_server_uses_the_thresholds_it_serves(
    start_cascade: StartCascade, tmp_path: Path
) -> None:
    """--server reads GET /admin/policy: thresholds in force for the same policy version,
    the file's (said plainly) for another."""
    text = """
tiers: {small: {type: llama_cpp}}
routes: {auto: {cascade: [{tier: small, acceptance: {method: mean_prob, threshold: 0.5}}]}}
"""
    cascade = start_cascade(text)
    same, other = tmp_path / "same.yaml", tmp_path / "other.yaml"
    same.write_text(text)
    other.write_text(text.replace("0.5", "0.6"))

    def told(path: Path) -> dict[str, Any]:
        command = [sys.executable, "-m", "router", "policy", "explain", "--policy", str(path)]
        command += ["--prompt", "Hi", "--server", cascade.url, "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        return dict(json.loads(done.stdout))

    assert told(same)["thresholds"] == f"in force on {cascade.url} (autotuned: none)"
    found = told(other)
    assert "so its tuned thresholds do not apply" in found["thresholds"]
    assert found["plan"][0]["acceptance"]["threshold"] == 0.6
    command = [sys.executable, "-m", "router", "policy", "explain", "--policy", str(same)]
    command += ["--prompt", "Hi", "--server", "http://127.0.0.1:9"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "admin/policy" in refused.stderr


def test_explain_prints_no_llama_cpp_notes() -> None:
    """Counting with the local model's vocabulary says nothing on stderr (llama.cpp's C code
    noted a vocabulary-only context on every run)."""
    done = subprocess.run(
        [sys.executable, "-m", "router", "policy", "explain", "--policy", "policies/default.yaml",
         "--prompt", "What is 2 + 2?"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )  # fmt: skip
    assert done.stderr == "" and "prompt" in done.stdout
