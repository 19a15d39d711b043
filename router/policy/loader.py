"""Read a policy file: size-capped bounded YAML, `${VAR}` interpolation, strict validation.

Every problem is reported, each with the file, line and column and its path in the
document (`routes.auto.cascade[1]: unknown tier 'larg' — did you mean 'large'?`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from router.backends.registry import TYPES
from router.backends.spec import RemoteTierSpec
from router.policy.model import DEFAULT_TEAM, Policy
from router.policy.prices import litellm_price, load_price_map
from router.policy.source import DocPath, SourceError, locate, read_yaml

if TYPE_CHECKING:
    from classifiers import Acceptance, Router

MAX_POLICY_BYTES = 1_048_576
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TIER_TAGS = frozenset(TYPES)  # pydantic's union branch names


@dataclass(frozen=True, slots=True)
class Problem:
    path: DocPath
    message: str


def dotted(path: DocPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    version: str  # first 12 hex chars of the file's sha256
    source: str
    loaded_at: float = field(default_factory=time.time)
    routers: Mapping[str, Router] = field(default_factory=dict)  # by `model` as written
    acceptance_models: Mapping[str, Acceptance] = field(default_factory=dict)


def _interpolate(node: Any, path: DocPath, env: Mapping[str, str], errors: list[Problem]) -> Any:
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(Problem(path, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {k: _interpolate(v, (*path, str(k)), env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*path, i), env, errors) for i, v in enumerate(node)]
    return node


def _unknown(kind: str, name: object, known: Iterable[str]) -> str:
    message = f"unknown {kind} '{name}'"
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"{message} — did you mean '{close[0]}'?" if close else message


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def reference_errors(document: Mapping[str, Any]) -> list[Problem]:
    """Names that must refer to something that exists. Works on the raw document, so these
    are reported alongside field errors, not only once the fields are all valid."""
    tiers = _mapping(document.get("tiers"))
    routes = _mapping(document.get("routes"))
    errors = [
        Problem(("routes", name, "<key>"), f"'{name}' is used for both a tier and a route")
        for name in sorted(set(tiers) & set(routes))
    ]
    for route_name, route in routes.items():
        if not isinstance(route, dict):
            continue
        cascade = route.get("cascade")
        steps: list[Any] = cascade if isinstance(cascade, list) else []
        for index, step in enumerate(steps):
            tier = step.get("tier") if isinstance(step, dict) else None
            if isinstance(tier, str) and tier not in tiers:
                path: DocPath = ("routes", route_name, "cascade", index, "tier")
                errors.append(Problem(path, _unknown("tier", tier, tiers)))
        errors += _fallback_errors(route_name, _mapping(route.get("fallbacks")), tiers)
        reference = route.get("reference_tier")
        if reference is not None and reference not in tiers:
            errors.append(
                Problem(
                    ("routes", route_name, "reference_tier"), _unknown("tier", reference, tiers)
                )
            )
        shadow = _mapping(route.get("shadow"))
        for name in ("reference_tier", "judge_tier"):
            named = shadow.get(name)
            if isinstance(named, str) and named not in tiers:
                path = ("routes", route_name, "shadow", name)
                errors.append(Problem(path, _unknown("tier", named, tiers)))
    default = document.get("default_route")
    if default is not None and default not in routes:
        errors.append(Problem(("default_route",), _unknown("route", default, routes)))
    return (
        errors
        + _team_errors(_mapping(document.get("teams")), routes)
        + _rule_errors(document.get("rules"), tiers, routes, _mapping(document.get("teams")))
    )


def _cycle_from(graph: dict[str, list[str]], node: str, trail: list[str]) -> list[str] | None:
    """A fallback cycle through `node`, if any (a module function: a nested function that
    calls itself is a reference cycle)."""
    if node in trail:
        return [*trail[trail.index(node) :], node]
    for target in graph.get(node, []):
        if found := _cycle_from(graph, target, [*trail, node]):
            return found
    return None


def _fallback_errors(route: str, fallbacks: dict[str, Any], tiers: dict[str, Any]) -> list[Problem]:
    errors = []
    graph: dict[str, list[str]] = {}
    for tier, targets in fallbacks.items():
        at: DocPath = ("routes", route, "fallbacks", tier)
        if tier not in tiers:
            errors.append(Problem((*at, "<key>"), _unknown("tier", tier, tiers)))
        listed = [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []
        for index, target in enumerate(listed):
            if target not in tiers:
                errors.append(Problem((*at, index), _unknown("tier", target, tiers)))
        graph[tier] = listed
    for tier in graph:
        if cycle := _cycle_from(graph, tier, []):
            path: DocPath = ("routes", route, "fallbacks", cycle[0])
            errors.append(Problem(path, "fallback cycle: " + " -> ".join(cycle)))
            break
    return errors


def _team_errors(teams: dict[str, Any], routes: dict[str, Any]) -> list[Problem]:
    errors: list[Problem] = []
    owners: dict[str, str] = {}
    for team_name, team in teams.items():
        cheaper = _mapping(_mapping(team).get("budget_routing")).get("route")
        if isinstance(cheaper, str) and cheaper not in routes:
            path: DocPath = ("teams", team_name, "budget_routing", "route")
            errors.append(Problem(path, _unknown("route", cheaper, routes)))
        keys = _mapping(team).get("keys")
        for index, key in enumerate(keys if isinstance(keys, list) else []):
            digest = _mapping(key).get("sha256")
            if not isinstance(digest, str):
                continue
            if digest in owners:
                errors.append(
                    Problem(
                        ("teams", team_name, "keys", index, "sha256"),
                        f"key already belongs to team '{owners[digest]}'",
                    )
                )
            owners.setdefault(digest, team_name)
    return errors


def _rule_errors(
    rules: object, tiers: dict[str, Any], routes: dict[str, Any], teams: dict[str, Any]
) -> list[Problem]:
    errors: list[Problem] = []
    names: set[str] = set()
    known_teams = [*teams, DEFAULT_TEAM]
    for index, raw in enumerate(rules if isinstance(rules, list) else []):
        rule = _mapping(raw)
        at: DocPath = ("rules", index)
        if isinstance(name := rule.get("name"), str):
            if name in names:
                errors.append(Problem((*at, "name"), f"another rule is already named '{name}'"))
            names.add(name)
        if (route := rule.get("route")) is not None and route not in routes:
            message = _unknown("route", route, routes)
            if route in tiers:  # a tier where a route belongs
                message = (
                    f"'{route}' is a tier, not a route: a rule sends requests to a route "
                    f"(routes: {', '.join(routes) or 'none'}); add one whose cascade is "
                    f"[{{tier: {route}}}]"
                )
            errors.append(Problem((*at, "route"), message))
        match = _mapping(rule.get("match"))
        for field_name, known, kind in (
            ("teams", known_teams, "team"),
            ("models", list(routes), "route"),
        ):
            values = match.get(field_name)
            for position, value in enumerate(values if isinstance(values, list) else []):
                if value not in known:
                    path = (*at, "match", field_name, position)
                    errors.append(Problem(path, _unknown(kind, value, known)))
        overrides = _mapping(_mapping(rule.get("overrides")).get("acceptance"))
        for tier in overrides:
            if tier not in tiers:
                path = (*at, "overrides", "acceptance", tier, "<key>")
                errors.append(Problem(path, _unknown("tier", tier, tiers)))
    return errors


def _field_names() -> set[str]:
    """Every field name a policy may use, anywhere (for "did you mean" on a typo)."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(Policy.model_json_schema())
    return names


def _validation_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        # Drop the union branch pydantic inserts after a tier's name (tiers.x.openai.model).
        path = tuple(
            part
            for index, part in enumerate(loc)
            if not (index == 2 and loc[0] == "tiers" and part in _TIER_TAGS)
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_invalid":
            tag, expected = error["ctx"]["tag"], sorted(_TIER_TAGS)
            message = f"{_unknown('tier type', tag, expected)} (one of {', '.join(expected)})"
            path = (*path, "type")
        elif error["type"] == "extra_forbidden":
            message = _unknown("field", path[-1], _field_names())
            path = (*path, "<key>")
        problems.append(Problem(path, message))
    return problems


class PolicyError(Exception):
    """A policy that cannot be used; `errors` lists every problem found, each as
    `LINE:COLUMN: path: message` (without a position when there is none)."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors

    @classmethod
    def of(
        cls, source: str, problems: list[Problem], marks: dict[DocPath, tuple[int, int]]
    ) -> PolicyError:
        lines = []
        for problem in problems:
            where = locate(marks, problem.path)
            path = dotted(tuple(p for p in problem.path if p != "<key>"))
            prefix = f"{where[0]}:{where[1]}: " if where else ""
            lines.append(f"{prefix}{path}: {problem.message}")
        return cls(source, lines)


def parse_policy(
    text: bytes,
    source: str = "<policy>",
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> LoadedPolicy:
    """Parse and validate policy bytes; raise PolicyError listing every problem.

    Classifier artifacts the policy names are loaded (and checked) here; relative paths
    are taken from `base` (the policy file's folder), else the working directory."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(source, [f"file is over {MAX_POLICY_BYTES} bytes; refusing to parse"])
    try:
        document, marks = read_yaml(text)
    except SourceError as exc:
        where = f"{exc.line}:{exc.column}: " if exc.line else ""
        raise PolicyError(source, [f"{where}{exc.message}"]) from None
    if not isinstance(document, dict):
        raise PolicyError(source, ["the document must be a mapping"])
    problems: list[Problem] = []
    document = _interpolate(document, (), os.environ if env is None else env, problems)
    if problems:
        raise PolicyError.of(source, problems, marks)
    problems = reference_errors(document)
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError.of(source, _validation_problems(exc) + problems, marks) from None
    if problems:
        raise PolicyError.of(source, problems, marks)
    policy = _with_litellm_prices(policy, problems)
    routers, acceptance = _classifiers(policy, base or Path.cwd(), problems)
    if problems:
        raise PolicyError.of(source, problems, marks)
    version = hashlib.sha256(text).hexdigest()[:12]
    return LoadedPolicy(policy, version, source, routers=routers, acceptance_models=acceptance)


def _classifier_references(policy: Policy) -> list[tuple[DocPath, str, str]]:
    """(where, reference, kind) of every artifact the policy names."""
    found: list[tuple[DocPath, str, str]] = []
    for name, route in policy.routes.items():
        if route.classifier is not None:
            found.append(
                (("routes", name, "classifier", "model"), route.classifier.model, "router")
            )
        for index, step in enumerate(route.cascade):
            if step.acceptance is not None and step.acceptance.model is not None:
                at: DocPath = ("routes", name, "cascade", index, "acceptance", "model")
                found.append((at, step.acceptance.model, "acceptance"))
    for index, rule in enumerate(policy.rules):
        if rule.match.classifier is not None:
            at = ("rules", index, "match", "classifier", "model")
            found.append((at, rule.match.classifier.model, "router"))
        for tier, spec in rule.overrides.acceptance.items():
            if spec.model is not None:
                at = ("rules", index, "overrides", "acceptance", tier, "model")
                found.append((at, spec.model, "acceptance"))
    return found


def _classifiers(
    policy: Policy, base: Path, problems: list[Problem]
) -> tuple[dict[str, Router], dict[str, Acceptance]]:
    """Load each named artifact once; a missing, altered or wrong-kind one is a problem."""
    references = _classifier_references(policy)
    if not references:
        return {}, {}
    from classifiers.artifacts import BUNDLED, ArtifactError, load_acceptance, load_router

    routers: dict[str, Router] = {}
    acceptance: dict[str, Acceptance] = {}
    for at, reference, kind in references:
        loaded: dict[str, Any] = routers if kind == "router" else acceptance
        if reference in loaded:
            continue
        where = reference if reference in BUNDLED else str(base / reference)
        try:
            loaded[reference] = (load_router if kind == "router" else load_acceptance)(where)
        except ArtifactError as exc:
            problems.append(Problem(at, str(exc)))
    return routers, acceptance


def _with_litellm_prices(policy: Policy, problems: list[Problem]) -> Policy:
    """Fill `price` of tiers with `price_from_litellm: true` from litellm's price map."""
    wanted = {name: spec for name, spec in policy.tiers.items() if spec.price_from_litellm}
    if not wanted:
        return policy
    price_map = load_price_map()
    tiers = dict(policy.tiers)
    for name, spec in wanted.items():
        at: DocPath = ("tiers", name, "price_from_litellm")
        if not isinstance(spec, RemoteTierSpec):
            problems.append(Problem(at, "only remote tiers have prices in litellm's map"))
            continue
        if "price" in spec.model_fields_set:
            problems.append(Problem(at, "set either `price` or `price_from_litellm`"))
            continue
        price = litellm_price(price_map, spec.model)
        if price is None:
            problems.append(Problem(at, f"model '{spec.model}' is not in litellm's price map"))
            continue
        tiers[name] = spec.model_copy(update={"price": price})
    return policy.model_copy(update={"tiers": tiers})


def load_policy(path: Path, env: Mapping[str, str] | None = None) -> LoadedPolicy:
    """Read at most MAX_POLICY_BYTES + 1 bytes: a huge file is refused without reading it."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_policy(text, str(path), env, path.parent)
