"""Read a policy file: size-capped safe YAML, `${VAR}` interpolation, strict validation."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
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
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, _format_validation(exc)) from None
    return LoadedPolicy(policy, hashlib.sha256(text).hexdigest()[:12], source)


def load_policy(path: Path, env: Mapping[str, str] | None = None) -> LoadedPolicy:
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_policy(text, str(path), env)
