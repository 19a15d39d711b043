"""`cascade policy validate | explain | schema`: work with policy files."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.policy import LoadedPolicy

_SERVER_TIMEOUT_S = 10


def _serving_problems(loaded: LoadedPolicy) -> list[str]:
    """What serving would refuse that the file alone does not show: a model file missing."""
    from router.backends.local_llama import LlamaCppTier

    problems = []
    for name, spec in loaded.policy.tiers.items():
        if isinstance(spec, LlamaCppTier):
            try:
                found = spec.gguf
            except (FileNotFoundError, RuntimeError, ValueError) as exc:
                problems.append(f"tiers.{name}: the bundled model cannot be found ({exc})")
                continue
            if not found.is_file():
                problems.append(f"tiers.{name}.model_path: no such file: {found}")
    return problems


def _validate(args: argparse.Namespace) -> int:
    from router.policy import PolicyError, load_policy

    failed = 0
    for path in args.files:
        try:
            loaded = load_policy(Path(path))
        except PolicyError as exc:
            failed += 1
            for error in exc.errors:
                print(f"{exc.source}: {error}")
            continue
        problems = [] if args.offline else _serving_problems(loaded)
        for problem in problems:
            print(f"{path}: {problem}")
        failed += bool(problems)
        if not problems:
            print(f"{path}: ok (version {loaded.version})")
    return 1 if failed else 0


def _served_policy(server: str, key: str | None) -> dict[str, Any]:
    """`GET /admin/policy` of a running server (an admin key when it has keys)."""
    url = f"{server.rstrip('/')}/admin/policy"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--server {server!r}: expected http://HOST:PORT or https://...")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only, above
    try:
        with urllib.request.urlopen(request, timeout=_SERVER_TIMEOUT_S) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}: HTTP {exc.code} (an admin key: --admin-key)") from None
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        raise ValueError(f"{url}: {exc}") from None
    if not isinstance(body, dict) or "tuned" not in body or "version" not in body:
        raise ValueError(f"{url}: not a cascade server's policy status")
    return body


def _explain(args: argparse.Namespace) -> int:
    from router.backends.base import REQUEST_FEATURES
    from router.explain import ServedThresholds, explain, render
    from router.policy import PolicyError, load_policy

    try:
        loaded = load_policy(args.policy)
        tags = frozenset(t.strip() for t in (args.tags or "").split(",") if t.strip())
        features = frozenset(f.strip() for f in (args.features or "").split(",") if f.strip())
        if unknown := sorted(features - REQUEST_FEATURES):
            raise ValueError(f"unknown features {unknown} (one of {sorted(REQUEST_FEATURES)})")
        served = None
        if args.server:
            key = args.admin_key or os.environ.get("CASCADE_ADMIN_KEY")
            served = ServedThresholds.of(args.server, _served_policy(args.server, key))
        result = explain(
            loaded,
            args.prompt,
            model=args.model,
            team=args.team,
            tags=tags,
            max_tokens=args.max_tokens,
            features=features,
            budget_share=args.budget_share,
            served=served,
        )
    except PolicyError as exc:
        print("\n".join(f"{exc.source}: {e}" for e in exc.errors), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from router.cli.main import open_ledger, write_report
    from router.ledger import LedgerError, open_reader
    from router.policy import PolicyError, load_policy
    from router.simulate import Scope, simulate
    from router.simulate.html import render_html
    from router.simulate.render import render_markdown, render_table

    try:
        loaded = load_policy(args.policy)
    except PolicyError as exc:
        print("\n".join(f"{exc.source}: {e}" for e in exc.errors), file=sys.stderr)
        return 1
    if (ledger := open_ledger(args, "policy simulate")) is None:
        return 1
    ledger.reader.close()  # each pass (and each process of the second) opens its own
    target = ledger.target
    try:
        report = simulate(
            lambda: open_reader(target),
            loaded,
            source=ledger.source,
            scope=Scope(ledger.since, ledger.until, args.team, args.route),
            workers=args.workers,
        )
    except (LedgerError, ValueError) as exc:
        print(f"cascade policy simulate: {exc}", file=sys.stderr)
        return 1
    renderers = {
        "json": lambda r: json.dumps(r, indent=2) + "\n",
        "markdown": render_markdown,
        "html": render_html,
        "table": render_table,
    }
    write_report(renderers[args.format](report), args.out, report["requests"])
    return 0


def _schema(_: argparse.Namespace) -> int:
    from router.policy import Policy

    print(json.dumps(Policy.model_json_schema(), indent=2))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="work with policy files")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_commands.add_parser("validate", help="check policy files; exit 1 on error")
    validate.add_argument("files", nargs="+")
    validate.add_argument(
        "--offline",
        action="store_true",
        help="check the files alone, not what only the serving machine has (model files)",
    )
    validate.set_defaults(run=_validate)
    explain = policy_commands.add_parser(
        "explain",
        help="show the rule, route, tier plan and cost a prompt would get (the file's "
        "thresholds; --server: those a running server serves with)",
    )
    explain.add_argument("--policy", type=Path, required=True)
    explain.add_argument("--prompt", required=True, help="the user message")
    explain.add_argument("--team", default="default")
    explain.add_argument("--model", help="requested model (default: the policy's default_route)")
    explain.add_argument(
        "--tags", help="comma-separated: the tags of the caller's key and x-cascade-tags header"
    )
    explain.add_argument("--max-tokens", type=int)
    explain.add_argument(
        "--features", help="comma-separated request features the request uses (tools, image, ...)"
    )
    explain.add_argument(
        "--budget-share",
        type=float,
        help="with --team: the share of its budget spent (0.9); shows how the plan changes",
    )
    explain.add_argument(
        "--server",
        help="a running cascade (http://HOST:PORT): use the thresholds it serves this policy "
        "with, where shadow.autotune moved them (GET /admin/policy)",
    )
    explain.add_argument(
        "--admin-key", help="with --server: an admin key (default: env CASCADE_ADMIN_KEY)"
    )
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(run=_explain)
    simulate = policy_commands.add_parser(
        "simulate",
        help="replay recorded traffic under a candidate policy: cost, local share, "
        "escalations, latency and quality beside what happened",
    )
    simulate.add_argument("--policy", type=Path, required=True, help="the candidate policy")
    simulate.add_argument(
        "--ledger", help="ledger URL (default: CASCADE_LEDGER, else sqlite:///var/ledger.db)"
    )
    simulate.add_argument("--since", help="from this time: ISO or a span before now (7d)")
    simulate.add_argument("--until", help="before this time (same forms)")
    simulate.add_argument("--team", help="only this team's requests")
    simulate.add_argument("--route", help="only requests on this route, now or replayed")
    simulate.add_argument(
        "--format", choices=("table", "json", "markdown", "html"), default="table"
    )
    simulate.add_argument("--out", type=Path, help="file to write (default: stdout)")
    simulate.add_argument(
        "--workers",
        type=int,
        help="processes for the replay (default: one per CPU, at most 8; one under 50,000 "
        "requests)",
    )
    simulate.set_defaults(run=_simulate)
    schema = policy_commands.add_parser("schema", help="print the policy JSON Schema")
    schema.set_defaults(run=_schema)
