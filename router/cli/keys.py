"""`cascade keys create|list|revoke`: manage the keys file (hashes only).

`create` prints the new key once, alone on its last line (scripts take `tail -n 1`); the
file keeps its SHA-256. A running server picks up every change within its poll interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import fcntl
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from router.keys.file import KeyRecord, KeysError, new_key, read_keys, write_keys
from router.policy.model import DEFAULT_TEAM, SpendLimits

_SPAN = re.compile(r"^(\d+)([hd])$")


def _keys_path(args: argparse.Namespace) -> Path:
    found = args.keys or os.environ.get("CASCADE_KEYS")
    if not found:
        raise KeysError("no keys file: pass --keys FILE or set CASCADE_KEYS")
    return Path(found)


def _expiry(text: str | None, now: dt.datetime) -> dt.datetime | None:
    if not text:
        return None
    if match := _SPAN.match(text):
        amount, unit = int(match.group(1)), match.group(2)
        return now + (dt.timedelta(hours=amount) if unit == "h" else dt.timedelta(days=amount))
    found = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two `create`s must not lose one of the keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _create(args: argparse.Namespace) -> int:
    path = _keys_path(args)
    policy = args.policy or os.environ.get("CASCADE_POLICY")
    problem = _team_problem(args.team, policy)
    if args.strict and (problem or not policy):
        said = problem or "--strict needs the policy (--policy or CASCADE_POLICY) to check the team"
        print(f"cascade keys create: {said}; no key made", file=sys.stderr)
        return 1
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key, record = new_key(
        args.team,
        role=args.role,
        tags=_names(args.tags),
        models=_names(args.models),
        expires_at=_expiry(args.expires, now),
        description=args.description or "",
        limits=SpendLimits.model_validate(
            {
                "usd_per_day": args.usd_per_day,
                "usd_per_month": args.usd_per_month,
                "requests_per_minute": args.requests_per_minute,
                "tokens_per_minute": args.tokens_per_minute,
                "max_in_flight": args.max_in_flight,
            }
        ),
    )
    with _locked(path):
        write_keys(path, [*read_keys(path), record])
    expires = record.expires_at.isoformat() if record.expires_at else "never"
    print(
        f"created key {record.id} for team {record.team} (role {record.role}, expires "
        f"{expires}) in {path}; it is shown once:",
        file=sys.stderr,
    )
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    print(key)
    return 0


def _team_problem(team: str, policy: str | None) -> str | None:
    """What is wrong with a team the policy does not define: it gets no limits and no budget
    (a typo in `--team` would otherwise go unnoticed). None when the policy defines it, or
    when there is no policy to ask."""
    if not policy:
        return None
    from router.policy import PolicyError, load_policy

    try:
        teams = load_policy(Path(policy)).policy.teams
    except (PolicyError, OSError):
        return f"could not read the policy {policy} to check team {team!r}"
    if team in teams or team == DEFAULT_TEAM:
        return None
    close = difflib.get_close_matches(team, list(teams), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"team {team!r} is not in {policy}{hint}: its keys would work, but the team has "
        "no limits, no budget and no budget routing there"
    )


def _list(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    keys = read_keys(_keys_path(args))
    rows = [
        {
            "id": k.id,
            "team": k.team,
            "role": k.role,
            "state": k.state(now),
            "created_at": k.created_at.isoformat() if k.created_at else None,
            "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "models": k.models,
            "tags": k.tags,
            "description": k.description,
        }
        for k in keys
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':12}  {'team':16}  {'role':5}  {'state':7}  {'expires':25}  models")
    for row in rows:
        models = ",".join(row["models"]) if row["models"] else "any"
        print(
            f"{row['id']:12}  {row['team']:16}  {row['role']:5}  {row['state']:7}  "
            f"{row['expires_at'] or 'never':25}  {models}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    path = _keys_path(args)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with _locked(path):
        keys = read_keys(path)
        found = [k for k in keys if k.id == args.id]
        if not found:
            print(f"cascade keys revoke: no key {args.id} in {path}", file=sys.stderr)
            return 1
        updated: list[KeyRecord] = [
            k.model_copy(update={"revoked_at": now}) if k.id == args.id and not k.revoked_at else k
            for k in keys
        ]
        write_keys(path, updated)
    print(f"revoked key {args.id} (team {found[0].team})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.keys_run(args))
    except (KeysError, ValidationError, ValueError) as exc:
        print(f"cascade keys {args.keys_command}: {exc}", file=sys.stderr)
        return 1


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys (hashes stored)")
    keys.set_defaults(run=run)
    sub = keys.add_subparsers(dest="keys_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--keys", help="keys file (default: CASCADE_KEYS)")
        return parser

    create = command("create", "make a key; prints it once, alone on the last line")
    create.add_argument("--team", required=True)
    create.add_argument(
        "--policy", help="warn when it does not define the team (default: env CASCADE_POLICY)"
    )
    create.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 1, no key made) a team the policy does not define",
    )
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument("--models", help="comma-separated routes and tiers it may use")
    create.add_argument("--tags", help="comma-separated tags its requests carry")
    create.add_argument("--expires", help="ISO time, or a span from now: 12h, 30d")
    create.add_argument("--description")
    create.add_argument("--usd-per-day", type=float, help="this key's own daily budget")
    create.add_argument("--usd-per-month", type=float, help="this key's own monthly budget")
    create.add_argument("--requests-per-minute", type=int)
    create.add_argument("--tokens-per-minute", type=int)
    create.add_argument(
        "--max-in-flight", type=int, help="this key's requests in progress at once (per process)"
    )
    create.set_defaults(keys_run=_create)
    listing = command("list", "the keys: id, team, role, state, expiry (never the key)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(keys_run=_list)
    revoke = command("revoke", "revoke a key by its id (refused from the next request on)")
    revoke.add_argument("id")
    revoke.set_defaults(keys_run=_revoke)
