"""API keys as a policy names them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def team_keys(keys: Mapping[str, str]) -> str:
    """The policy's `teams:` entries, one a line (indented two spaces): each team with its
    one key, by the key's SHA-256."""
    return "\n".join(
        f"  {team}: {{keys: [{{sha256: {hashlib.sha256(key.encode()).hexdigest()}}}]}}"
        for team, key in keys.items()
    )
