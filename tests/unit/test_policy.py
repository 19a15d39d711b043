from __future__ import annotations

import time
from pathlib import Path

import pytest

from router.backends.openai_http import OpenAITier
from router.policy import PolicyError, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[2]

# Line numbers in the expectations below count from this text's first (empty) line.
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


def errors_of(text: bytes) -> list[str]:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, env={})
    return error.value.errors


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # class: environment variable unset
        (
            BASE.replace(b"${BASE:-}", b"${NOPE}"),
            "4:35: tiers.large.api_base: environment variable NOPE is not set",
        ),
        # class: unknown reference, with the near name
        (
            BASE.replace(b"{tier: large}", b"{tier: larg}"),
            "9:16: routes.auto.cascade[1].tier: unknown tier 'larg' — did you mean 'large'?",
        ),
        # class: unknown tag of a tagged union
        (
            BASE.replace(b"type: openai", b"type: openia"),
            "4:17: tiers.large.type: unknown tier type 'openia' — did you mean 'openai'?",
        ),
        # class: unknown key
        (
            BASE.replace(b"model: m}", b"model: m, colour: red}"),
            "4:58: tiers.large.colour: unknown field 'colour'",
        ),
        # class: value out of range
        (
            BASE.replace(b"threshold: 0.5", b"threshold: 1.5"),
            "8:47: routes.auto.cascade[0].acceptance.threshold: Input should be less than or equal",
        ),
        # class: missing required field (points at the mapping that lacks it)
        (BASE.replace(b", model: m}", b"}"), "4:10: tiers.large.model: Field required"),
        # class: wrong type
        (
            BASE.replace(b"  auto:\n    cascade:", b"  auto:\n    cascade: 3\n    x:"),
            "7:14: routes.auto.cascade: Input should be a valid list",
        ),
        # class: YAML structure
        (b"tiers:\n  a: {type: llama_cpp}\n  a: {type: llama_cpp}\n", "3:3: duplicate key 'a'"),
        (b"tiers: [", "1:9: not valid YAML"),
        (b"- a list", "the document must be a mapping"),
    ],
)
def test_each_class_of_error_points_at_line_and_path(text: bytes, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_every_problem_is_listed_at_once() -> None:
    text = BASE.replace(b"{tier: large}", b"{tier: larg}").replace(b"model: m}", b"model: m, x: 1}")
    assert len(errors_of(text)) == 2


def test_a_one_step_route_needs_no_acceptance() -> None:
    parse_policy(
        BASE.replace(b"      - {tier: small, acceptance: {threshold: 0.5}}\n", b""), env={}
    )


def test_alias_bomb_is_refused_quickly() -> None:
    lines = [b"a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        previous, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]".encode())
    started = time.perf_counter()
    errors = errors_of(b"\n".join(lines))
    assert time.perf_counter() - started < 1.0
    assert "aliases" in errors[0]


def test_deep_nesting_is_refused() -> None:
    assert "nested deeper" in errors_of(b"a: " + b"[" * 100 + b"]" * 100)[0]


def test_fifty_megabyte_policy_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.write(b"# padding\n" * 5_000_000)
    started = time.perf_counter()
    with pytest.raises(PolicyError) as error:
        load_policy(huge)
    assert time.perf_counter() - started < 1.0
    assert "refusing to parse" in error.value.errors[0]


def test_committed_schema_matches_the_model() -> None:
    import json

    from router.policy import Policy

    committed = json.loads((REPO / "policies/schema.json").read_text())
    assert committed == Policy.model_json_schema(), (
        "run: cascade policy schema > policies/schema.json"
    )


TIERS = b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
  backup: {type: openai, model: n}
"""


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            b"{cascade: [{tier: large}], fallbacks: {large: [backup], backup: [large]}}",
            "routes.auto.fallbacks.large: fallback cycle: large -> backup -> large",
        ),
        (
            b"{cascade: [{tier: large}], fallbacks: {large: [large]}}",
            "fallback cycle: large -> large",
        ),
        (
            b"{cascade: [{tier: large}], fallbacks: {large: [bakup]}}",
            "routes.auto.fallbacks.large[0]: unknown tier 'bakup' — did you mean 'backup'?",
        ),
        (
            b"{cascade: [{tier: large}], fallbacks: {larg: [backup]}}",
            "routes.auto.fallbacks.larg: unknown tier 'larg'",
        ),
    ],
)
def test_fallbacks_are_checked(routes: bytes, expected: str) -> None:
    errors = errors_of(TIERS + b"routes:\n  auto: " + routes + b"\n")
    assert any(expected in e for e in errors), errors


def test_fallback_chain_without_cycle_is_valid() -> None:
    text = TIERS + b"routes:\n  auto: {cascade: [{tier: large}], fallbacks: {large: [backup]}}\n"
    route = parse_policy(text, env={}).policy.routes["auto"]
    assert route.fallbacks == {"large": ["backup"]}


def test_prices_from_litellm_model_cost() -> None:
    text = (
        b"tiers:\n  large: {type: openai, model: gpt-4o-mini, price_from_litellm: true}\n"
        b"routes:\n  auto: {cascade: [{tier: large}]}\n"
    )
    price = parse_policy(text, env={}).policy.tiers["large"].price
    assert (price.input_per_1m, price.output_per_1m) == pytest.approx((0.15, 0.60))


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        (
            b"{type: openai, model: no-such-model-9, price_from_litellm: true}",
            "model 'no-such-model-9' is not in litellm's price map",
        ),
        (
            b"{type: openai, model: gpt-4o, price_from_litellm: true, price: {input_per_1m: 1}}",
            "set either `price` or `price_from_litellm`",
        ),
    ],
)
def test_bad_litellm_prices_are_errors(tier: bytes, expected: str) -> None:
    text = b"tiers:\n  large: " + tier + b"\nroutes:\n  auto: {cascade: [{tier: large}]}\n"
    errors = errors_of(text)
    assert any(e.endswith(expected) and "tiers.large.price_from_litellm" in e for e in errors)


def test_a_tier_where_a_route_belongs_and_a_misspelt_field_get_hints() -> None:
    base = b"tiers: {large: {type: openai, model: m}}\nroutes: {auto: {cascade: [{tier: large}]}}\n"
    with pytest.raises(PolicyError) as tier:
        parse_policy(base + b"rules: [{name: r, route: large}]\n")
    assert "'large' is a tier, not a route" in tier.value.errors[0]
    typo = base.replace(b"{tier: large}", b"{tier: large, acceptence: {threshold: 0.5}}")
    with pytest.raises(PolicyError) as field:
        parse_policy(typo)
    assert field.value.errors[0].endswith("unknown field 'acceptence' — did you mean 'acceptance'?")
