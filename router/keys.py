"""Who is calling: an API key -> its team and key tags, by the keys' SHA-256 in the policy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from router.policy.model import DEFAULT_TEAM, Policy


@dataclass(frozen=True, slots=True)
class Caller:
    team: str
    key_id: str | None  # first 12 hex chars of the key's SHA-256, never the key
    tags: frozenset[str]


class KeyIndex:
    """API key -> team and key tags, by the keys' SHA-256 listed in the policy."""

    def __init__(self, policy: Policy) -> None:
        self._keys = {
            key.sha256: (team_name, frozenset(key.tags))
            for team_name, team in policy.teams.items()
            for key in team.keys
        }

    def caller(self, key: str | None) -> Caller:
        if not key:
            return Caller(DEFAULT_TEAM, None, frozenset())
        # aiohttp decodes header bytes that are not UTF-8 as surrogates: hash them as sent
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        team, tags = self._keys.get(digest, (DEFAULT_TEAM, frozenset()))
        return Caller(team, digest[:12], tags)
