"""Who is calling: keys from the policy and the keys file, and every way a key is refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

import pytest

from router.errors import APIError
from router.keys.file import KEY_PREFIX, KeysError, new_key, read_keys, write_keys
from router.keys.index import KeyIndex, keys_file_of, load_key_index
from router.policy import parse_policy
from router.policy.model import SpendLimits

POLICY_KEY = "sk-team-a-key"
DIGEST = hashlib.sha256(POLICY_KEY.encode()).hexdigest()
NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def policy(keys: str = f"[{{sha256: {DIGEST}, tags: [batch]}}]") -> object:
    return parse_policy(
        f"""
tiers: {{small: {{type: llama_cpp}}}}
routes: {{auto: {{cascade: [{{tier: small}}]}}}}
teams: {{a: {{keys: {keys}}}}}
""".encode(),
        env={},
    ).policy


def refusal(index: KeyIndex, header: str | None) -> APIError:
    with pytest.raises(APIError) as error:
        index.caller(header, NOW)
    return error.value


def test_a_policy_key_maps_to_its_team_tags_and_a_short_id() -> None:
    index = KeyIndex(policy(), [], file_in_use=False)  # type: ignore[arg-type]
    assert index.enforced
    caller = index.caller(f"Bearer {POLICY_KEY}", NOW)
    assert (caller.team, caller.tags, caller.key_id) == ("a", frozenset({"batch"}), DIGEST[:12])
    assert caller.role == "user" and caller.models is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing API key: send it in the Authorization header, after the word Bearer"),
        ("", "missing API key: send it in the Authorization header, after the word Bearer"),
        (
            "Basic dXNlcjpwYXNz",
            "malformed Authorization header: expected the word Bearer, a space and the key",
        ),
        (
            "Bearer ",
            "malformed Authorization header: expected the word Bearer, a space and the key",
        ),
        (
            "Bearer two words",
            "malformed Authorization header: expected the word Bearer, a space and the key",
        ),
        (
            "Bearer " + "k" * 513,
            "malformed Authorization header: expected the word Bearer, a space and the key",
        ),
        ("Bearer sk-someone-else", "invalid API key"),
    ],
)
def test_with_auth_on_a_missing_malformed_or_unknown_key_is_a_401(
    header: str | None, message: str
) -> None:
    error = refusal(KeyIndex(policy(), [], file_in_use=False), header)  # type: ignore[arg-type]
    assert (error.status, error.code, error.message) == (401, "invalid_api_key", message)
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="cascade"'
    assert "someone" not in error.message  # the key is never echoed


def test_expired_and_revoked_keys_and_allowed_models() -> None:
    expired_key, expired = new_key("b", expires_at=NOW - dt.timedelta(seconds=1))
    revoked_key, revoked = new_key("b")
    revoked = revoked.model_copy(update={"revoked_at": NOW})
    narrow_key, narrow = new_key("b", models=["auto"], role="admin")
    index = KeyIndex(policy("[]"), [expired, revoked, narrow], file_in_use=True)  # type: ignore[arg-type]
    assert refusal(index, f"Bearer {expired_key}").message == "this API key is expired"
    assert refusal(index, f"Bearer {revoked_key}").message == "this API key is revoked"
    caller = index.caller(f"Bearer {narrow_key}", NOW)
    assert (caller.team, caller.role) == ("b", "admin")
    caller.allow("auto")
    with pytest.raises(APIError) as error:
        caller.allow("small")
    assert (error.value.status, error.value.code, error.value.param) == (
        403,
        "model_not_allowed",
        "model",
    )
    with pytest.raises(APIError) as error:
        index.caller(f"Bearer {expired_key}", NOW - dt.timedelta(days=1)).require_admin()
    assert error.value.status == 403


def test_with_no_key_configured_everyone_is_the_default_team() -> None:
    index = KeyIndex(policy("[]"), [], file_in_use=False)  # type: ignore[arg-type]
    assert not index.enforced
    assert index.caller(None).key_id is None
    stranger = index.caller("Bearer sk-someone-else")
    assert stranger.team == "default"
    assert stranger.key_id == hashlib.sha256(b"sk-someone-else").hexdigest()[:12]
    # an empty keys file in use still turns auth on
    assert KeyIndex(policy("[]"), [], file_in_use=True).enforced  # type: ignore[arg-type]


def test_the_keys_file_holds_hashes_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, record = new_key("search", tags=["batch"], description="ci")
    assert key.startswith(KEY_PREFIX) and len(key) > 50
    write_keys(path, [record])
    text = path.read_text()
    assert key not in text and record.sha256 in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_keys(path) == [record]
    assert read_keys(tmp_path / "absent.yaml") == []
    path.write_text("keys: [{id: nothex, sha256: x, team: t}]")
    with pytest.raises(KeysError, match=r"keys\.0\.id"):
        read_keys(path)


def test_which_keys_file_is_in_use(tmp_path: Path) -> None:
    found = parse_policy(
        b"tiers: {small: {type: llama_cpp}}\nroutes: {auto: {cascade: [{tier: small}]}}\n"
        b"auth: {keys_file: keys.yaml}\n",
        env={},
    ).policy
    policy_path = tmp_path / "policy.yaml"
    assert keys_file_of(found, policy_path, None) == tmp_path / "keys.yaml"
    assert keys_file_of(found, policy_path, tmp_path / "other.yaml") == tmp_path / "other.yaml"
    index = load_key_index(found, tmp_path / "keys.yaml")
    assert index.enforced and len(index) == 0


def test_a_keys_own_concurrency_cap_is_kept_alone(tmp_path: Path) -> None:
    """A key whose only limit is `max_in_flight` keeps it (it is enforced at the gateway),
    and one with no limits at all stores none."""
    capped = new_key("search", limits=SpendLimits(max_in_flight=3))[1]
    plain = new_key("search", limits=SpendLimits())[1]
    assert capped.limits is not None and capped.limits.max_in_flight == 3
    assert plain.limits is None
    write_keys(tmp_path / "keys.yaml", [capped])
    assert read_keys(tmp_path / "keys.yaml")[0].limits == SpendLimits(max_in_flight=3)
