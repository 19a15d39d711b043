"""Who is calling: the bearer key → its team, role, tags and allowed models.

Keys are known by their SHA-256 only: a team's `keys` in the policy, and the keys file
(router/keys/file.py). With any key configured auth is on: a request without a key, with a
malformed, unknown, expired or revoked one gets OpenAI's 401; a key asking for a model it is
not allowed gets 403. With none configured every caller is team `default` (the server then
listens on loopback only, unless told otherwise: router/cli/main.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from router.errors import APIError, clip
from router.keys.file import KeyRecord, Role, key_hash, read_keys
from router.policy.model import DEFAULT_TEAM, Policy, SpendLimits

_TOKEN = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no spaces


@dataclass(frozen=True, slots=True)
class Caller:
    team: str
    key_id: str | None  # first 12 hex chars of the key's SHA-256, never the key
    tags: frozenset[str]
    role: Role = "user"
    models: frozenset[str] | None = None  # routes and tiers it may ask for; None: any
    limits: SpendLimits | None = None  # the key's own budget and rates (beside its team's)

    def allow(self, model: str) -> None:
        """403 unless this key may ask for `model`."""
        if self.models is not None and model not in self.models:
            raise APIError(
                403,
                f"this API key may not use model '{clip(model)}'",
                param="model",
                code="model_not_allowed",
            )

    def may_use(self, route: str) -> bool:
        """Whether this key's model list covers `route` (a route or tier name)."""
        return self.models is None or route in self.models

    def allow_route(self, route: str, rule: str | None) -> None:
        """403 when a rule moved the request to a route this key may not use (its model
        list covers where a request goes, not only what it asked for)."""
        if not self.may_use(route):
            raise APIError(
                403,
                f"rule '{rule}' sends this request to route '{route}', which this API key "
                "may not use",
                param="model",
                code="model_not_allowed",
            )

    def require_admin(self) -> None:
        if self.role != "admin":
            raise APIError(403, "this endpoint needs an admin key", code="admin_key_required")


def unauthorized(message: str) -> APIError:
    error = APIError(401, message, code="invalid_api_key")
    error.headers["WWW-Authenticate"] = 'Bearer realm="cascade"'
    return error


def _policy_records(policy: Policy) -> Iterable[KeyRecord]:
    for team_name, team in policy.teams.items():
        for key in team.keys:
            yield KeyRecord(
                id=key.sha256[:12],
                sha256=key.sha256,
                team=team_name,
                role=key.role,
                tags=key.tags,
                models=key.models,
                expires_at=key.expires_at,
                limits=key.limits,
            )


class KeyIndex:
    """Bearer key → Caller, by the SHA-256 of the key."""

    def __init__(self, policy: Policy, file_keys: list[KeyRecord], *, file_in_use: bool) -> None:
        records = {record.sha256: record for record in _policy_records(policy)}
        records.update((record.sha256, record) for record in file_keys)
        # each key's caller is built once, not per request; a key that can expire or be
        # revoked keeps its record beside it, to be checked against the clock each time
        self._keys = {
            digest: (_caller_of(record), record if _dated(record) else None)
            for digest, record in records.items()
        }
        # Auth is on once any key is configured, or a keys file is named (even empty).
        self.enforced = bool(self._keys) or file_in_use

    def __len__(self) -> int:
        return len(self._keys)

    def caller(self, authorization: str | None, now: dt.datetime | None = None) -> Caller:
        """The caller of a request with this `Authorization` header (401 when auth is on and
        the key is missing, malformed, unknown, expired or revoked)."""
        key = _bearer(authorization)
        if not self.enforced:
            if key is None:
                return Caller(DEFAULT_TEAM, None, frozenset())
            return Caller(DEFAULT_TEAM, key_hash(key)[:12], frozenset())
        if key is None:
            raise unauthorized(
                "missing API key: send it in the Authorization header, after the word Bearer"
                if not authorization
                else "malformed Authorization header: expected the word Bearer, a space and the key"
            )
        found = self._keys.get(key_hash(key))
        if found is None:
            raise unauthorized("invalid API key")
        caller, dated = found
        if dated is not None:
            state = dated.state(now or dt.datetime.now(dt.UTC))
            if state != "valid":
                raise unauthorized(f"this API key is {state}")
        return caller


def _dated(record: KeyRecord) -> bool:
    """Whether a key can stop being valid with time (an expiry, or a revocation)."""
    return record.expires_at is not None or record.revoked_at is not None


def _caller_of(record: KeyRecord) -> Caller:
    models = frozenset(record.models) if record.models is not None else None
    return Caller(
        record.team, record.id, frozenset(record.tags), record.role, models, record.limits
    )


def _bearer(authorization: str | None) -> str | None:
    """The key of `Bearer <key>`; None when absent or not of that form."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not _TOKEN.match(key):
        return None
    return key


def keys_file_of(policy: Policy, policy_path: Path, override: Path | None) -> Path | None:
    """The keys file in use: CASCADE_KEYS, else the policy's `auth.keys_file` (relative to
    the policy's folder), else none."""
    if override is not None:
        return override
    if policy.auth.keys_file:
        return policy_path.parent / policy.auth.keys_file
    return None


def load_key_index(policy: Policy, keys_file: Path | None) -> KeyIndex:
    """The policy's keys and the keys file's (KeysError when the file is not valid)."""
    records = read_keys(keys_file) if keys_file is not None else []
    return KeyIndex(policy, records, file_in_use=keys_file is not None)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unauthenticated_refusal(host: str) -> str:
    return (
        f"no API keys are configured, so anyone who can reach {host} could use this gateway: "
        "create keys (`cascade keys create --team T --keys FILE`, then CASCADE_KEYS=FILE), "
        "listen on 127.0.0.1, or pass --allow-unauthenticated (CASCADE_ALLOW_UNAUTHENTICATED=1)"
    )
