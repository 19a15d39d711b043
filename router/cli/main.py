"""The `cascade` command (also `python -m router`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from router.cli import demo
from router.cli.classify import add_commands as add_classify_commands
from router.cli.keys import add_commands as add_keys_commands
from router.cli.policy import add_commands as add_policy_commands
from router.settings import Settings, SettingsError

if TYPE_CHECKING:
    from router.ledger import Reader
    from router.ledger.targets import LedgerTarget


def _preflight(settings: Settings) -> str | None:
    """What keeps `settings` from serving (every policy error, a bad keys file, no keys on a
    public address), or None."""
    from router.keys.file import KeysError
    from router.keys.index import is_loopback, keys_file_of, load_key_index, unauthenticated_refusal
    from router.policy import PolicyError, load_policy

    try:
        loaded = load_policy(settings.policy_path)  # fail fast, with every error listed
    except PolicyError as exc:
        return "\n".join(f"{exc.source}: {e}" for e in exc.errors)
    try:
        keys_file = keys_file_of(loaded.policy, settings.policy_path, settings.keys_path)
        keys = load_key_index(loaded.policy, keys_file)
    except KeysError as exc:
        return f"cascade serve: {exc}"
    if not keys.enforced and not is_loopback(settings.host) and not settings.allow_unauthenticated:
        return f"cascade serve: {unauthenticated_refusal(settings.host)}"
    return None


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(policy_path=args.policy, host=args.host, port=args.port)
    except SettingsError as exc:
        print(f"cascade serve: {exc}", file=sys.stderr)
        return 1
    if args.allow_unauthenticated:
        settings = settings.model_copy(update={"allow_unauthenticated": True})
    problem = _preflight(settings)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    if args.workers <= 1:
        from router.process.main import serve_one

        serve_one(settings, reuse_port=False)
        return 0
    from router.process.main import SETTINGS_VARIABLE

    # The supervisor starts afresh in this process (router/process/main.py): it never holds the
    # policy, its classifiers or the libraries they import, and keeps the pid signals reach.
    os.environ[SETTINGS_VARIABLE] = settings.model_dump_json()
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = [sys.executable, "-m", "router.process.main", str(args.workers)]
    os.execv(sys.executable, supervisor)  # noqa: S606 - this interpreter, fixed arguments
    return 1  # not reached: execv replaces the process


@dataclass(frozen=True)
class _LedgerWindow:
    source: str
    reader: Reader
    since: str | None
    until: str | None
    target: LedgerTarget


def open_ledger(args: argparse.Namespace, command: str) -> _LedgerWindow | None:
    """The reader and time window of `--ledger/--since/--until`; None (said why) on error."""
    from router.ledger import LedgerError, open_reader, parse_ledger_url
    from router.ledger.times import parse_time

    try:
        settings = Settings.from_env(ledger_url=args.ledger)
        target = parse_ledger_url(settings.ledger_url, settings.redis_url)
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        return _LedgerWindow(str(target), open_reader(target), since, until, target)
    except (LedgerError, ValueError) as exc:  # SettingsError is a ValueError
        print(f"cascade {command}: {exc}", file=sys.stderr)
        return None


def _ledger_export(args: argparse.Namespace) -> int:
    if (ledger := open_ledger(args, "ledger export")) is None:
        return 1
    reader, since, until, target = ledger.reader, ledger.since, ledger.until, ledger.source
    count = 0
    try:
        with args.out.open("wb") if args.out else contextlib.nullcontext(sys.stdout.buffer) as out:
            for body in reader.records(since, until):
                out.write(body + b"\n")
                count += 1
    except BrokenPipeError:  # `... | head`
        return 0
    finally:
        reader.close()
    print(f"exported {count} records from {target}", file=sys.stderr)
    return 0


def _ledger_show(args: argparse.Namespace) -> int:
    """`cascade ledger show REQUEST_ID`: one record as a readable story, or as JSON with
    `--json` (exit 1 when there is none)."""
    from router.ledger.story import story

    if (ledger := open_ledger(args, "ledger show")) is None:
        return 1
    try:
        body = ledger.reader.record(args.request_id)
    finally:
        ledger.reader.close()
    if body is None:
        print(
            f"cascade ledger show: no record {args.request_id!r} in {ledger.source}",
            file=sys.stderr,
        )
        return 1
    record = json.loads(body)
    print(json.dumps(record, indent=2) if args.json else story(record))
    return 0


def _ledger_tail(args: argparse.Namespace) -> int:
    """`cascade ledger tail`: the last records (of a team, route, status), one line each, or
    each as a story with `--story`."""
    import collections

    from router.ledger.story import one_line, story

    if args.since is None:
        args.since = "1h"
    if (ledger := open_ledger(args, "ledger tail")) is None:
        return 1
    wanted = {
        field: value
        for field, value in (("team", args.team), ("route", args.route), ("status", args.status))
        if value is not None
    }
    last: collections.deque[dict[str, object]] = collections.deque(maxlen=args.n)
    try:
        for body in ledger.reader.records(ledger.since, ledger.until):
            record = json.loads(body)
            if record.get("kind") is None and all(record.get(f) == v for f, v in wanted.items()):
                last.append(record)
    finally:
        ledger.reader.close()
    try:
        for record in last:
            print(story(record) + "\n" if args.story else one_line(record))
    except BrokenPipeError:
        return 0
    if not last:
        print(f"cascade ledger tail: no matching records in {ledger.source}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from router.audit import build_report
    from router.audit.columns import pick
    from router.audit.html import render_html
    from router.audit.text import render_csv, render_table

    by = [d.strip() for d in args.by.split(",") if d.strip()]
    if args.reconcile is not None:
        return _reconcile(args)
    try:
        columns = pick(args.columns)
    except ValueError as exc:
        print(f"cascade audit: {exc}", file=sys.stderr)
        return 2
    if (ledger := open_ledger(args, "audit")) is None:
        return 1
    try:
        report = build_report(
            ledger.reader, by=by, since=ledger.since, until=ledger.until, source=ledger.source
        )
    except ValueError as exc:
        print(f"cascade audit: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.reader.close()
    if args.format == "json":
        text = json.dumps(report, indent=2)
    elif args.format == "csv":
        text = render_csv(report)
    elif args.format == "html":
        text = render_html(report, columns)
    else:
        text = render_table(report, columns, width=shutil.get_terminal_size((120, 40)).columns)
    write_report(text, args.out, report["totals"]["requests"])
    return 0


def write_report(text: str, out: Path | None, requests: int) -> None:
    """A report to `--out` (saying so on stderr, with how many requests it covers), else to
    stdout."""
    if out:
        out.write_text(text)
        print(f"wrote {out} ({requests:,} requests)", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _reconcile(args: argparse.Namespace) -> int:
    """`cascade audit --reconcile EXPORT`: the ledger against a provider's usage export."""
    import orjson

    from router.audit.reconcile import ledger_attempts, read_export, reconcile, render

    if (ledger := open_ledger(args, "audit")) is None:
        return 1
    try:
        rows = read_export(args.reconcile.read_text())
        records = (orjson.loads(body) for body in ledger.reader.records(ledger.since, ledger.until))
        report = reconcile(ledger_attempts(records), rows)
    except (OSError, ValueError) as exc:  # JSONDecodeError and bad times are ValueErrors
        print(f"cascade audit --reconcile: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.reader.close()
    text = json.dumps(report, indent=2) + "\n" if args.format == "json" else render(report)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _openapi(_: argparse.Namespace) -> int:
    from router.api.openapi import document

    print(json.dumps(document(), indent=2, sort_keys=True))
    return 0


def _model_path(_: argparse.Namespace) -> int:
    from router.backends.local_llama import bundled_model_path

    try:
        print(bundled_model_path())
    except FileNotFoundError as exc:
        print(f"cascade model-path: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cascade", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible proxy")
    serve.add_argument("--policy", type=Path, help="policy file (env CASCADE_POLICY)")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8080")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); weights stay mmap'd",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve with no API keys configured on an address other than loopback (warned)",
    )
    serve.set_defaults(run=_serve)

    spec = commands.add_parser("openapi", help="print the OpenAPI document of the endpoints")
    spec.set_defaults(run=_openapi)

    bundled = commands.add_parser(
        "model-path",
        help="print the bundled local model's path (e.g. for `python -m llama_cpp.server "
        '--model "$(cascade model-path)"` as a real large tier)',
    )
    bundled.set_defaults(run=_model_path)

    add_policy_commands(commands)
    add_classify_commands(commands)
    add_keys_commands(commands)

    ledger = commands.add_parser("ledger", help="read the decision-record ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    export = ledger_commands.add_parser(
        "export", help="write records as JSONL (time order for sqlite, stored order otherwise)"
    )
    export.add_argument(
        "--ledger", help="ledger URL (default: CASCADE_LEDGER, else sqlite:///var/ledger.db)"
    )
    export.add_argument("--since", help="from this time: ISO (2026-11-23T10:00Z) or 24h, 7d ago")
    export.add_argument("--until", help="before this time (same forms)")
    export.add_argument("--out", type=Path, help="file to write (default: stdout)")
    export.set_defaults(run=_ledger_export)
    show = ledger_commands.add_parser(
        "show",
        help="print one request's decision record (its x-request-id): where it went and why, "
        "each tier tried, what it cost",
    )
    show.add_argument("request_id", help="the gateway's id of the request (x-request-id)")
    show.add_argument(
        "--ledger", help="ledger URL (default: CASCADE_LEDGER, else sqlite:///var/ledger.db)"
    )
    show.add_argument("--json", action="store_true", help="the record itself, as JSON")
    show.set_defaults(run=_ledger_show, since=None, until=None)
    tail = ledger_commands.add_parser(
        "tail",
        help="the last records, one line each (time, id, team, route, status, tiers, "
        "cost, latency, reason)",
    )
    tail.add_argument(
        "--ledger", help="ledger URL (default: CASCADE_LEDGER, else sqlite:///var/ledger.db)"
    )
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--since", help="from this time: ISO or a span before now (default 1h)")
    tail.add_argument("--until", help="before this time (same forms)")
    tail.add_argument("--team", help="only this team's")
    tail.add_argument("--route", help="only this route's")
    tail.add_argument(
        "--status", help="only this status (ok, degraded, error, invalid, refused, ...)"
    )
    tail.add_argument("--story", action="store_true", help="each as `ledger show` tells it")
    tail.set_defaults(run=_ledger_tail)

    demo.add_parser(commands)

    audit = commands.add_parser("audit", help="route-audit report from the ledger")
    audit.add_argument(
        "--ledger", help="ledger URL (default: CASCADE_LEDGER, else sqlite:///var/ledger.db)"
    )
    audit.add_argument("--since", help="from this time: ISO or a span before now (24h, 7d)")
    audit.add_argument("--until", help="before this time (same forms)")
    audit.add_argument(
        "--by", default="team", help="group by any of team,route,tier,model,day (default team)"
    )
    audit.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    audit.add_argument(
        "--columns",
        help="the table's and HTML's figures: all, or names separated by commas (default: "
        "requests,cost_usd,saved_usd,saved_pct,escalation_rate,local_acceptance_rate,refused,"
        "local_quality,latency_p95; others: prompt_tokens,completion_tokens,estimated_usd,"
        "counterfactual_cost_usd,degraded,errors,shed,cache_hit_rate,cache_saved_usd,"
        "latency_p50,latency_p99); CSV and JSON have every figure",
    )
    audit.add_argument(
        "--reconcile",
        type=Path,
        metavar="EXPORT",
        help="compare the ledger with a provider's usage export (CSV or JSON: id or time, "
        "model, tokens, cost), per team (table or json)",
    )
    audit.add_argument("--out", type=Path, help="file to write (default: stdout)")
    audit.set_defaults(run=_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
