"""Classifiers in policies: route pre-routers and learned acceptance, loaded and checked
when the policy is (a missing, altered or wrong-kind artifact is a policy error)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from classifiers.artifacts import bundled_path, metadata_path
from router.policy import PolicyError, load_policy, parse_policy

POLICY = b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto:
    classifier: {model: ROUTER, threshold: 0.2}
    cascade:
      - {tier: small, acceptance: {method: learned, model: ACCEPTANCE, threshold: 0.3}}
      - {tier: large}
"""


def policy(router: str = "prerouter", acceptance: str = "acceptance") -> bytes:
    return POLICY.replace(b"ROUTER", router.encode()).replace(b"ACCEPTANCE", acceptance.encode())


def errors_of(text: bytes, base: Path | None = None) -> list[str]:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, env={}, base=base)
    return error.value.errors


def test_bundled_artifacts_are_loaded_once_each() -> None:
    loaded = parse_policy(policy(), env={})
    assert set(loaded.routers) == {"prerouter"}
    assert set(loaded.acceptance_models) == {"acceptance"}
    router = loaded.routers["prerouter"]
    assert router.kind == "router" and len(router.version) == 12
    assert 0.0 <= router.score("What is 2 + 2?") <= 1.0


def test_a_policy_without_classifiers_loads_none() -> None:
    text = policy().replace(b"    classifier: {model: prerouter, threshold: 0.2}\n", b"")
    text = text.replace(b"method: learned, model: acceptance, ", b"")
    loaded = parse_policy(text, env={})
    assert (loaded.routers, loaded.acceptance_models) == ({}, {})


def test_relative_paths_are_taken_from_the_policy_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("prerouter", "acceptance"):
        shutil.copy(bundled_path(name), folder / f"team-{name}.skops")
        shutil.copy(metadata_path(bundled_path(name)), folder / f"team-{name}.json")
    file = tmp_path / "policy.yaml"
    file.write_bytes(policy("models/team-prerouter.skops", "models/team-acceptance.skops"))
    loaded = load_policy(file, env={})
    assert set(loaded.routers) == {"models/team-prerouter.skops"}
    assert set(loaded.acceptance_models) == {"models/team-acceptance.skops"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            policy(router="nowhere.skops"),
            "7:25: routes.auto.classifier.model: /srv/nowhere.skops: no such classifier artifact",
        ),
        (
            policy(acceptance="prerouter"),
            "9:60: routes.auto.cascade[0].acceptance.model: ",
        ),
        (
            policy().replace(b"model: acceptance, ", b""),
            "9:35: routes.auto.cascade[0].acceptance: method 'learned' needs `model`",
        ),
        (
            policy().replace(b"method: learned", b"method: mean_prob"),
            "9:35: routes.auto.cascade[0].acceptance: `model` is only used with method 'learned'",
        ),
        (
            policy().replace(b"      - {tier: large}\n", b""),
            "7:5: routes.auto: a route with a classifier needs at least two cascade steps",
        ),
        (
            policy().replace(b"threshold: 0.2", b"threshold: 1.2"),
            "7:47: routes.auto.classifier.threshold: Input should be less than or equal to 1",
        ),
    ],
)
def test_classifier_errors_point_at_the_reference(text: bytes, expected: str) -> None:
    errors = errors_of(text, base=Path("/srv"))
    assert any(e.startswith(expected) for e in errors), errors


def test_wrong_kind_says_which_kind_it_is() -> None:
    (error,) = errors_of(policy(router="acceptance"))
    assert error.endswith("acceptance.skops: its kind is 'acceptance', not 'router'"), error


def test_an_altered_artifact_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "mine.skops"
    shutil.copy(bundled_path("prerouter"), target)
    shutil.copy(metadata_path(bundled_path("prerouter")), metadata_path(target))
    with target.open("ab") as handle:
        handle.write(b"\0")
    (error,) = errors_of(policy(router=str(target)))
    assert "does not match the sha256 in its metadata" in error


def test_rule_overrides_may_use_learned_acceptance() -> None:
    rule = (
        b"rules:\n"
        b"  - name: strict\n"
        b"    match: {tags: [strict]}\n"
        b"    overrides: {acceptance: {small: {method: learned, model: MODEL, threshold: 0.9}}}\n"
    )
    loaded = parse_policy(policy() + rule.replace(b"MODEL", b"acceptance"), env={})
    assert set(loaded.acceptance_models) == {"acceptance"}
    (error,) = errors_of(policy() + rule.replace(b"MODEL", b"missing.skops"), base=Path("/srv"))
    assert error == (
        "14:62: rules[0].overrides.acceptance.small.model: "
        "/srv/missing.skops: no such classifier artifact"
    )
