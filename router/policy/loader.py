"""Read a policy file: size-capped safe YAML, `${VAR}` interpolation, strict validation."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from router.policy.model import Policy

MAX_POLICY_BYTES = 1_048_576
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PolicyError(Exception):
    """A policy that cannot be used; `errors` lists every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    version: str  # first 12 hex chars of the file's sha256
    source: str
    loaded_at: float = field(default_factory=time.time)


def _interpolate(node: Any, path: str, env: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), env, errors)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, errors) for i, v in enumerate(node)]
    return node


def _unknown(kind: str, name: object, known: Iterable[str]) -> str:
    message = f"unknown {kind} '{name}'"
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"{message} — did you mean '{close[0]}'?" if close else message


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def reference_errors(document: Mapping[str, Any]) -> list[str]:
    """Names that must refer to something that exists. Works on the raw document, so these
    are reported alongside field errors, not only once the fields are all valid."""
    tiers = _mapping(document.get("tiers"))
    routes = _mapping(document.get("routes"))
    errors = [
        f"{name}: used for both a tier and a route" for name in sorted(set(tiers) & set(routes))
    ]
    for route_name, route in routes.items():
        if not isinstance(route, dict):
            continue
        cascade = route.get("cascade")
        steps: list[Any] = cascade if isinstance(cascade, list) else []
        for index, step in enumerate(steps):
            tier = step.get("tier") if isinstance(step, dict) else None
            if isinstance(tier, str) and tier not in tiers:
                errors.append(
                    f"routes.{route_name}.cascade[{index}]: {_unknown('tier', tier, tiers)}"
                )
        reference = route.get("reference_tier")
        if reference is not None and reference not in tiers:
            errors.append(
                f"routes.{route_name}.reference_tier: {_unknown('tier', reference, tiers)}"
            )
    default = document.get("default_route")
    if default is not None and default not in routes:
        errors.append(f"default_route: {_unknown('route', default, routes)}")
    return errors


def _format_validation(exc: ValidationError) -> list[str]:
    messages = []
    for error in exc.errors():
        location = ""
        for part in error["loc"]:
            if isinstance(part, int):
                location += f"[{part}]"
            else:
                location += f".{part}" if location else str(part)
        message = error["msg"].removeprefix("Value error, ")
        messages.append(f"{location}: {message}" if location else message)
    return messages


def parse_policy(
    text: bytes, source: str = "<policy>", env: Mapping[str, str] | None = None
) -> LoadedPolicy:
    """Parse and validate policy bytes; raise PolicyError listing every problem."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(source, [f"file is {len(text)} bytes; the limit is {MAX_POLICY_BYTES}"])
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(document, dict):
        raise PolicyError(source, ["the document must be a mapping"])
    errors: list[str] = []
    document = _interpolate(document, "", os.environ if env is None else env, errors)
    if errors:
        raise PolicyError(source, errors)
    references = reference_errors(document)
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, _format_validation(exc) + references) from None
    if references:
        raise PolicyError(source, references)
    return LoadedPolicy(policy, hashlib.sha256(text).hexdigest()[:12], source)


def load_policy(path: Path, env: Mapping[str, str] | None = None) -> LoadedPolicy:
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_policy(text, str(path), env)
