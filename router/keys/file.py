"""The keys file: API keys by their SHA-256 only, each with its team, role, tags, expiry and
allowed models. Written by `cascade keys create|revoke` (atomically), read by the server
(and re-read when it changes, like the policy).

    keys:
      - id: 3f9a1c2b4d5e            # the first 12 hex characters of the SHA-256
        sha256: 3f9a1c2b4d5e...     # of the key as the client sends it
        team: search
        role: user                  # or admin: /admin/*, every team's spend
        tags: [batch]
        models: [auto, small]       # routes and tiers it may ask for (absent: any)
        expires_at: 2027-01-01T00:00:00Z
        revoked_at: null
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from router.policy.model import SpendLimits

KEY_PREFIX = "sk-cascade-"
MAX_KEYS_BYTES = 4 * 1024 * 1024
Role = Literal["user", "admin"]


class KeysError(ValueError):
    """A keys file that cannot be read or is not valid."""


def key_hash(key: str) -> str:
    """The SHA-256 a key is stored and looked up by (of its bytes as sent)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class KeyRecord(BaseModel):
    """One key, by its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    team: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    role: Role = "user"
    tags: list[str] = Field(default_factory=list, max_length=16)
    models: list[str] | None = Field(None, description="Routes and tiers it may ask for.")
    limits: SpendLimits | None = Field(None, description="This key's own budget and rates.")
    description: str = Field("", max_length=200)
    created_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None

    def state(self, now: dt.datetime) -> Literal["valid", "expired", "revoked"]:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "valid"


class KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyRecord] = Field(default_factory=list)


def read_keys(path: Path) -> list[KeyRecord]:
    """Every key in the file; a missing file holds none (auth is still on)."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_KEYS_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeysError(f"{path}: cannot read: {exc.strerror}") from None
    if len(text) > MAX_KEYS_BYTES:
        raise KeysError(f"{path}: over {MAX_KEYS_BYTES} bytes")
    try:
        document = yaml.safe_load(text) or {}
        return KeysDocument.model_validate(document).keys
    except yaml.YAMLError as exc:
        raise KeysError(f"{path}: not YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise KeysError(f"{path}: {where}: {first['msg']}") from None


def write_keys(path: Path, keys: list[KeyRecord]) -> None:
    """Replace the file in one rename (a reader never sees half of it), readable by its
    owner only."""
    document = KeysDocument(keys=keys).model_dump(mode="json", exclude_none=True)
    text = "# cascade keys: hashes only (cascade keys create|list|revoke)\n" + yaml.safe_dump(
        document, sort_keys=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def new_key(
    team: str,
    *,
    role: Role = "user",
    tags: list[str] | None = None,
    models: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    description: str = "",
    limits: SpendLimits | None = None,
) -> tuple[str, KeyRecord]:
    """A fresh key (256 random bits) and the record that stores only its hash."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = key_hash(key)
    record = KeyRecord(
        id=digest[:12],
        sha256=digest,
        team=team,
        role=role,
        tags=tags or [],
        models=models,
        description=description,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        expires_at=expires_at,
        limits=limits if limits is not None and (limits.limited or limits.max_in_flight) else None,
    )
    return key, record
