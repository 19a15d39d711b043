from __future__ import annotations

import hashlib

import pytest

from router.policy import PolicyError, parse_policy
from router.rules import Facts, KeyIndex, decide, rule_classifiers, rule_scores

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


def test_keys_map_to_team_tags_and_a_short_id() -> None:
    keys = KeyIndex(POLICY)
    caller = keys.caller(KEY)
    assert (caller.team, caller.tags, caller.key_id) == ("a", frozenset({"batch"}), DIGEST[:12])
    stranger = keys.caller("sk-someone-else")
    assert stranger.team == "default"
    assert stranger.key_id == hashlib.sha256(b"sk-someone-else").hexdigest()[:12]
    assert keys.caller(None).key_id is None


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
    decision = decide(POLICY, facts)
    assert decision is not None
    assert (decision.rule, decision.plan.label) == (rule, route)
    first = decision.plan.steps[0]
    if small_threshold is not None:
        assert first.tier == "small"
        assert first.acceptance is not None
        assert first.acceptance.threshold == small_threshold


def test_prompt_token_rules_do_not_match_an_uncounted_prompt() -> None:
    decision = decide(POLICY, Facts(team="a", model="auto", prompt_tokens=None))
    assert decision is not None
    assert decision.rule == "team-a-strict"


def test_unknown_model_has_no_decision() -> None:
    assert decide(POLICY, Facts(model="nope")) is None


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


def test_rules_match_on_a_classifier_score_range() -> None:
    assert rule_classifiers(SCORED.policy) == ("prerouter", "routellm-mixtral-gpt4")
    for score, rule in ((0.0, "unlikely-locally"), (0.05, "unlikely-locally"), (0.0501, None)):
        facts = Facts(model="auto", scores={"prerouter": score, "routellm-mixtral-gpt4": 0.5})
        decision = decide(SCORED.policy, facts)
        assert decision is not None and decision.rule == rule, score
    # a rule whose classifier was not scored (e.g. a tier asked for by name) never matches
    decision = decide(SCORED.policy, Facts(model="auto"))
    assert decision is not None and decision.rule is None


def test_rule_scores_use_the_loaded_routers_and_record_the_first() -> None:
    question = "What is the capital of France?"
    models = rule_classifiers(SCORED.policy)
    scores, recorded = rule_scores(models, SCORED.routers, question)
    prerouter = SCORED.routers["prerouter"]
    assert scores == {name: SCORED.routers[name].score(question) for name in models}
    assert recorded == {
        "name": "prerouter",
        "version": prerouter.version,
        "score": round(prerouter.score(question), 6),
        "threshold": None,
        "skipped_first_step": False,
    }
    assert rule_scores((), SCORED.routers, question) == ({}, None)
