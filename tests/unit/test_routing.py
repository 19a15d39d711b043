from __future__ import annotations

import hashlib

import pytest

from router.policy import PolicyError, parse_policy
from router.routing import Facts, Scorer, decide, rule_classifiers
from tests.support.fakes import FixedRouter

KEY = "sk-team-a-key"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()

POLICY = parse_policy(
    f"""
tiers:
  small: {{type: llama_cpp}}
  large: {{type: openai, model: m}}
routes:
  auto:
    cascade:
      - {{tier: small, acceptance: {{threshold: 0.5}}}}
      - {{tier: large}}
  big:
    cascade: [{{tier: large}}]
teams:
  a:
    keys: [{{sha256: {DIGEST}, tags: [batch]}}]
rules:
  - name: tagged
    match: {{tags: [urgent, critical]}}
    route: big
  - name: team-a-long
    match: {{teams: [a], prompt_tokens: {{min: 100}}}}
    route: big
  - name: team-a-strict
    match: {{teams: [a], models: [auto]}}
    overrides: {{acceptance: {{small: {{method: min_prob, threshold: 0.9}}}}}}
""".encode(),
    env={},
).policy


@pytest.mark.parametrize(
    ("facts", "rule", "route", "small_threshold"),
    [
        (Facts(model="auto"), None, "auto", 0.5),
        (Facts(model="auto", tags=frozenset({"critical"})), "tagged", "big", None),
        (Facts(team="a", model="auto", prompt_tokens=150), "team-a-long", "big", None),
        (Facts(team="a", model="auto", prompt_tokens=99), "team-a-strict", "auto", 0.9),
        (Facts(team="a", model="big"), None, "big", None),  # models: [auto] does not match
        (Facts(team="a", model="large"), None, "large", None),  # a tier by name: no rules
    ],
)
def test_first_matching_rule_decides(
    facts: Facts, rule: str | None, route: str, small_threshold: float | None
) -> None:
    decision = decide(POLICY, {}, facts)
    assert decision is not None
    assert (decision.rule, decision.route) == (rule, route)
    assert decision.verdicts == () and decision.skipped == 0  # no classifiers in this policy
    first = decision.plan.steps[0]
    if small_threshold is not None:
        assert first.tier == "small"
        assert first.acceptance is not None
        assert first.acceptance.threshold == small_threshold


def test_prompt_token_rules_do_not_match_an_uncounted_prompt() -> None:
    decision = decide(POLICY, {}, Facts(team="a", model="auto", prompt_tokens=None))
    assert decision is not None
    assert decision.rule == "team-a-strict"


def test_unknown_model_has_no_decision() -> None:
    assert decide(POLICY, {}, Facts(model="nope")) is None


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("[{name: r, route: nowhere}]", "rules[0].route: unknown route 'nowhere'"),
        (
            "[{name: r, match: {teams: [b]}, route: big}]",
            "rules[0].match.teams[0]: unknown team 'b'",
        ),
        (
            "[{name: r, match: {models: [aut]}, route: big}]",
            "rules[0].match.models[0]: unknown route 'aut' — did you mean 'auto'?",
        ),
        (
            "[{name: r, overrides: {acceptance: {smal: {threshold: 1}}}}]",
            "rules[0].overrides.acceptance.smal: unknown tier 'smal' — did you mean 'small'?",
        ),
        ("[{name: r, route: big}, {name: r, route: big}]", "rules[1].name: another rule"),
        ("[{name: r}]", "rules[0]: a rule needs a route or overrides"),
        ("[{name: r, route: big, match: {prompt_tokens: {min: 5, max: 2}}}]", "max (2) is below"),
        (
            "[{name: r, route: big, match: {classifier: {model: prerouter, min: 0.5, max: 0.2}}}]",
            "max (0.2) is below min (0.5)",
        ),
        (
            "[{name: r, route: big, match: {classifier: {model: acceptance, max: 0.2}}}]",
            "rules[0].match.classifier.model: ",  # an acceptance model cannot score a prompt
        ),
    ],
)
def test_rule_references_are_checked(rules: str, message: str) -> None:
    text = f"""
tiers: {{small: {{type: llama_cpp}}, large: {{type: openai, model: m}}}}
routes: {{auto: {{cascade: [{{tier: small}}]}}, big: {{cascade: [{{tier: large}}]}}}}
rules: {rules}
"""
    with pytest.raises(PolicyError) as error:
        parse_policy(text.encode(), env={})
    assert any(message in e for e in error.value.errors), error.value.errors


SCORED = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
  big:
    cascade: [{tier: large}]
rules:
  - name: unlikely-locally
    match: {classifier: {model: prerouter, max: 0.05}}
    route: big
  - name: also-scored
    match: {tags: [nobody-has-this], classifier: {model: routellm-mixtral-gpt4, min: 0.9}}
    route: big
""",
    env={},
)


def routers(prerouter: float, routellm: float = 0.5) -> dict[str, Scorer]:
    return {
        "prerouter": FixedRouter("prerouter", prerouter),
        "routellm-mixtral-gpt4": FixedRouter("routellm-mixtral-gpt4", routellm),
    }


def test_rules_match_on_a_classifier_score_range() -> None:
    assert rule_classifiers(SCORED.policy) == ("prerouter", "routellm-mixtral-gpt4")
    for score, rule in ((0.0, "unlikely-locally"), (0.05, "unlikely-locally"), (0.0501, None)):
        decision = decide(SCORED.policy, routers(score), Facts(model="auto"))
        assert decision is not None and decision.rule == rule, score
        # every rule classifier was consulted, and the first is what the record shows
        assert [v.name for v in decision.verdicts] == ["prerouter", "routellm-mixtral-gpt4"]
        assert decision.classifier_record() == {
            "name": "prerouter",
            "version": "v1",
            "score": score,
            "threshold": None,
            "skipped_first_step": False,
        }
    # a tier asked for by name is passed through: no rule, no classifier consulted
    decision = decide(SCORED.policy, routers(0.0), Facts(model="large"))
    assert decision is not None and decision.rule is None and decision.verdicts == ()


def test_the_real_routers_score_the_question() -> None:
    question = "What is the capital of France?"
    decision = decide(SCORED.policy, SCORED.routers, Facts(model="auto", question=question))
    assert decision is not None
    prerouter = SCORED.routers["prerouter"]
    assert decision.verdicts[0].score == prerouter.score(question)
    assert decision.verdicts[0].version == prerouter.version


PREROUTED = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto:
    classifier: {model: prerouter, threshold: 0.3}
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
rules:
  - name: scored
    match: {classifier: {model: prerouter, min: 0.9}}
    overrides: {acceptance: {small: {threshold: 0.1}}}
""",
    env={},
)


@pytest.mark.parametrize(
    ("score", "skipped", "order", "rule"),
    [
        (0.29, 1, [("large", False), ("small", True)], None),
        (0.3, 0, [("small", False), ("large", False)], None),
        (0.95, 0, [("small", False), ("large", False)], "scored"),
    ],
)
def test_the_prerouter_skips_the_first_step_below_its_threshold(
    score: float, skipped: int, order: list[tuple[str, bool]], rule: str | None
) -> None:
    decision = decide(PREROUTED.policy, routers(score), Facts(model="auto"))
    assert decision is not None
    assert decision.skipped == skipped and decision.rule == rule
    assert [(s.step.tier, s.rescue) for s in decision.schedule()] == order
    # the rule's classifier and the pre-router are the same artifact: scored once, both shown
    assert [v.threshold for v in decision.verdicts] == [None, 0.3]
    record = decision.classifier_record()
    assert record is not None
    assert (record["threshold"], record["skipped_first_step"]) == (0.3, bool(skipped))


FEATURED = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
  agentic: {type: openai, model: a}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
  agents: {cascade: [{tier: agentic}]}
rules:
  - name: tool-users
    match: {features: [tools]}
    route: agents
""",
    env={},
).policy


@pytest.mark.parametrize(
    ("features", "route"),
    [(frozenset(), "auto"), (frozenset({"image"}), "auto"), (frozenset({"tools"}), "agents")],
)
def test_rules_match_on_request_features(features: frozenset[str], route: str) -> None:
    decision = decide(FEATURED, {}, Facts(model="auto", features=features))
    assert decision is not None and decision.route == route


def test_a_tier_declares_the_features_it_serves() -> None:
    with pytest.raises(PolicyError, match="unknown features"):
        parse_policy(b"tiers: {s: {type: llama_cpp, features: [telepathy]}}\n"
                     b"routes: {a: {cascade: [{tier: s}]}}\n", env={})  # fmt: skip
