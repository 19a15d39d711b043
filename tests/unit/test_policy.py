from __future__ import annotations

from pathlib import Path

import pytest

from router.policy import OpenAITier, PolicyError, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[2]

BASE = b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, api_base: "${BASE:-}", model: m}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
"""


def test_default_policy_loads_and_large_is_off_without_env() -> None:
    loaded = load_policy(REPO / "policies/default.yaml", env={})
    large = loaded.policy.tiers["large"]
    assert isinstance(large, OpenAITier)
    assert not large.configured
    assert len(loaded.version) == 12


def test_env_turns_large_on() -> None:
    loaded = load_policy(
        REPO / "policies/default.yaml",
        env={"CASCADE_LARGE_API_BASE": "http://vllm:8000/v1/", "CASCADE_LARGE_MODEL": "qwen"},
    )
    large = loaded.policy.tiers["large"]
    assert isinstance(large, OpenAITier)
    assert (large.api_base, large.model) == ("http://vllm:8000/v1", "qwen")


def test_unset_variable_without_default_is_an_error() -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(BASE.replace(b"${BASE:-}", b"${NOPE}"), env={})
    assert error.value.errors == ["tiers.large.api_base: environment variable NOPE is not set"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE.replace(b"{tier: large}", b"{tier: larg}"),
            "routes.auto.cascade[1]: unknown tier 'larg'",
        ),
        (BASE.replace(b"type: openai", b"type: openia"), "tiers.large"),
        (BASE.replace(b"model: m}", b"model: m, colour: red}"), "colour"),
        (BASE.replace(b"threshold: 0.5", b"threshold: 1.5"), "threshold"),
        (b"- a list", "the document must be a mapping"),
        (b"tiers: [", "not valid YAML"),
    ],
)
def test_invalid_policies_say_where(text: bytes, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, env={})
    assert any(message in e for e in error.value.errors), error.value.errors


def test_oversized_policy_is_rejected_before_parsing() -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(b"#" * 2_000_000, env={})
    assert "limit" in error.value.errors[0]
