"""`cascade classify label|train|eval|calibrate`: argument parsing and output only.

Training and evaluation need scikit-learn; it is imported when a classify command runs,
never when the parser is built (`cascade serve` builds the same parser).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from classifiers.artifacts import ACCEPTANCE, ROUTER, ArtifactError, load_any
from classifiers.model import Acceptance, Router

if TYPE_CHECKING:
    from classifiers.examples import Examples


def _examples(args: argparse.Namespace) -> Examples:
    from classifiers.examples import load_examples

    return load_examples(args.labels, args.weak, args.strong)


def _label(args: argparse.Namespace) -> int:
    from router.label import label

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    count = asyncio.run(
        label(args.policy, args.tier, datasets, limit=args.limit, out=args.out, seed=args.seed)
    )
    print(f"labeled {count} new items into {args.out}")
    return 0


def _train_from_ledger(args: argparse.Namespace) -> int:
    from classifiers.train import train_vectors
    from router.ledger.times import parse_time
    from router.shadow.calibrate import ledger_rows

    if args.route is None:
        print("--from-ledger needs --route", file=sys.stderr)
        return 2
    since = parse_time(args.since) if args.since else None
    rows = ledger_rows(args.from_ledger, args.route, args.kind, since=since)
    metadata = train_vectors(
        args.kind,
        rows.vectors,
        rows.agree,
        rows.ids,
        args.out,
        source=f"shadow checks of route '{args.route}' in {args.from_ledger}",
        hold_out_share=0.25 if args.hold_out_share is None else args.hold_out_share,
        seed=args.seed,
        c=args.c,
        name=args.name,
    )
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(rows.kinds.items()))
    metrics = metadata["metrics"]
    print(
        f"wrote {args.out} ({metadata['kind']} {metadata['version']}): trained on "
        f"{metadata['training_data']['rows']} shadow checks ({kinds} in all), "
        f"{metrics['held_out_rows']} held out, held-out AUROC "
        f"{metrics.get('held_out_auroc', 'n/a')}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from classifiers.train import HoldOut, train

    if args.from_ledger is not None:
        return _train_from_ledger(args)
    if args.labels is None:
        print("give --labels, or --from-ledger", file=sys.stderr)
        return 2

    groups = tuple(g.strip() for g in (args.hold_out_groups or "").split(",") if g.strip())
    metadata = train(
        args.kind,
        _examples(args),
        args.out,
        hold_out=HoldOut(groups, args.hold_out_share or 0.0, args.seed),
        columns=[c for c in (args.weak, args.strong) if c],
        c=args.c,
        name=args.name,
    )
    held = len(metadata["held_out"]["prompts"])
    print(
        f"wrote {args.out} ({metadata['kind']} {metadata['version']}): "
        f"trained on {metadata['training_data']['rows']} rows, {held} held out"
    )
    return 0


def _table(report: dict[str, object]) -> str:
    from rich.console import Console
    from rich.table import Table

    model: dict[str, str] = report["model"]  # type: ignore[assignment]
    table = Table(
        title=f"{model['name']} ({model['kind']} {model['version']}) on {report['labels']}"
    )
    columns = ("benchmark", "router", "n", "weak", "strong", "APGR", "CPT(50%)", "CPT(80%)")
    for column in (*columns, "AUROC"):
        table.add_column(column, justify="left" if column in columns[:2] else "right")
    for row in report["rows"]:  # type: ignore[attr-defined]
        table.add_row(
            row["benchmark"],
            row["router"],
            str(row["n"]),
            *(
                f"{row[k]:.3f}"
                for k in ("weak_accuracy", "strong_accuracy", "apgr", "cpt50", "cpt80", "auroc")
            ),
        )
    console = Console(width=120, file=io.StringIO())
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def _model_examples(args: argparse.Namespace) -> tuple[Router | Acceptance, Examples]:
    """The model and its labeled rows (only those its training left out, with --held-out)."""
    from classifiers.evaluate import held_out

    model = load_any(args.model)
    examples = _examples(args)
    if args.held_out:
        examples = examples.subset(held_out(model, examples))
    return model, examples


def _eval(args: argparse.Namespace) -> int:
    from classifiers.evaluate import evaluate
    from classifiers.plot import svg

    model, examples = _model_examples(args)
    report = evaluate(model, examples)
    if args.plot:
        args.plot.write_text(svg(report))
    if args.format == "json":
        text = json.dumps(report, indent=2) + "\n"
    else:
        text = _table(report)
        if report["strong_assumed_correct"]:
            text += "(no strong column: the tier escalated to is taken as always correct)\n"
    (args.out.write_text if args.out else sys.stdout.write)(text)
    return 0


def _write_threshold(args: argparse.Namespace, path: list[str | int], threshold: float) -> int:
    from router.policy.edit import policy_change

    updated, diff = policy_change(args.policy, path, threshold)
    print(diff or "(the policy already holds this threshold)", end="")
    if args.write and diff:
        args.policy.write_text(updated)
        print(f"wrote {args.policy}")
    return 0


def _calibrate_from_ledger(args: argparse.Namespace) -> int:
    from router.ledger.times import parse_time
    from router.policy.edit import acceptance_path
    from router.shadow.calibrate import checks_threshold, ledger_checks

    if args.route is None:
        print("--from-ledger needs --route", file=sys.stderr)
        return 2
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    checks = ledger_checks(
        args.from_ledger, args.route, since=since, until=until, feedback=not args.no_feedback
    )
    result = checks_threshold(
        checks.scores,
        checks.agree,
        strong_share=args.target_strong_share,
        quality=args.target_quality,
    )
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(checks.kinds.items()))
    print(
        f"threshold {result.threshold} for route '{checks.route}' step '{checks.tier}' from "
        f"{len(checks)} shadow checks and feedback items ({kinds}): escalates "
        f"{result.strong_share:.1%}, routed quality {result.quality:.3f} (the reference tier "
        "taken as correct)"
    )
    if args.policy is None:
        return 0
    return _write_threshold(
        args, acceptance_path(args.policy, args.route, checks.tier), result.threshold
    )


def _calibrate(args: argparse.Namespace) -> int:
    from classifiers.calibrate import calibrate
    from classifiers.evaluate import scores
    from router.policy.edit import threshold_path

    if args.from_ledger is not None:
        return _calibrate_from_ledger(args)
    if args.labels is None or args.model is None:
        print("give --labels and --model, or --from-ledger", file=sys.stderr)
        return 2
    model, examples = _model_examples(args)
    result = calibrate(
        scores(model, examples),
        examples.weak,
        examples.strong_or_assumed,
        strong_share=args.target_strong_share,
        quality=args.target_quality,
    )
    print(
        f"threshold {result.threshold}: escalates {result.strong_share:.1%} of "
        f"{len(examples)} labeled prompts, routed accuracy {result.quality:.3f}"
    )
    if args.policy is None:
        return 0
    if args.route is None:
        print("--policy needs --route", file=sys.stderr)
        return 2
    return _write_threshold(
        args, threshold_path(args.policy, args.route, model.kind), result.threshold
    )


def run(args: argparse.Namespace) -> int:
    """Run a classify subcommand; user errors print one line and exit 1."""
    from router.policy.edit import PolicyEditError

    try:
        return int(args.classify_run(args))
    except (ArtifactError, PolicyEditError, ValueError, KeyError, OSError) as exc:
        print(f"cascade classify {args.classify_command}: {exc}", file=sys.stderr)
        return 1


def _labels_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels", type=Path, required=True, help="a label run (.jsonl) or a CSV table/folder"
    )
    parser.add_argument("--weak", help="table column: the weak model's correctness")
    parser.add_argument("--strong", help="table column: the strong model's correctness")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """A trained model and the labeled rows to score it on (`_model_examples` reads them)."""
    _labels_arguments(parser)
    parser.add_argument("--model", required=True, help="a .skops file or a bundled name")
    parser.add_argument("--held-out", action="store_true", help="only rows train left out")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    classify = commands.add_parser("classify", help="label data and train routing models")
    classify.set_defaults(run=run)
    sub = classify.add_subparsers(dest="classify_command", required=True)

    label = sub.add_parser("label", help="run a tier over graded data and store outcomes")
    label.add_argument("--policy", type=Path, default=Path("policies/default.yaml"))
    label.add_argument("--tier", help="default: the policy's first local tier")
    label.add_argument("--datasets", default="gsm8k,svamp,arc-easy,arc-challenge,mmlu,nq")
    label.add_argument("--limit", type=int, help="items per dataset (a seeded sample)")
    label.add_argument("--seed", type=int, default=0)
    label.add_argument("--out", type=Path, required=True)
    label.set_defaults(classify_run=_label)

    train = sub.add_parser("train", help="fit a router or an acceptance model (skops artifact)")
    train.add_argument("--labels", type=Path, help="a label run (.jsonl) or a CSV table/folder")
    train.add_argument("--weak", help="table column: the weak model's correctness")
    train.add_argument("--strong", help="table column: the strong model's correctness")
    train.add_argument(
        "--from-ledger",
        metavar="URL",
        help="instead of labels: the features and verdicts of the route's shadow checks",
    )
    train.add_argument("--route", help="with --from-ledger: whose checks")
    train.add_argument("--since", help="with --from-ledger: checks from (ISO time, or 30d ago)")
    train.add_argument("--out", type=Path, required=True, help="NAME.skops (+ NAME.json)")
    train.add_argument("--kind", choices=(ROUTER, ACCEPTANCE), default=ROUTER)
    train.add_argument("--name", help="default: the file's stem")
    train.add_argument("--hold-out-groups", help="groups (files / datasets) left out, comma-sep.")
    train.add_argument(
        "--hold-out-share",
        type=float,
        default=None,
        help="and this share of rows (default 0 with --labels, 0.25 with --from-ledger)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--c", type=float, help="inverse regularisation (default per kind)")
    train.set_defaults(classify_run=_train)

    evaluate = sub.add_parser("eval", help="APGR, CPT(50%%), CPT(80%%), AUROC per benchmark")
    _model_arguments(evaluate)
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    evaluate.add_argument("--plot", type=Path, help="write quality vs strong share as SVG")
    evaluate.add_argument("--out", type=Path, help="default: stdout")
    evaluate.set_defaults(classify_run=_eval)

    cal = sub.add_parser("calibrate", help="pick a threshold; optionally write it into a policy")
    cal.add_argument("--labels", type=Path, help="a label run (.jsonl) or a CSV table/folder")
    cal.add_argument("--weak", help="table column: the weak model's correctness")
    cal.add_argument("--strong", help="table column: the strong model's correctness")
    cal.add_argument("--model", help="a .skops file or a bundled name")
    cal.add_argument("--held-out", action="store_true", help="only rows train left out")
    cal.add_argument(
        "--from-ledger",
        metavar="URL",
        help="instead of labels: the route's shadow checks in this ledger (with --route)",
    )
    cal.add_argument("--since", help="with --from-ledger: checks from (ISO time, or 7d ago)")
    cal.add_argument("--until", help="with --from-ledger: checks before (ISO time, or 1h ago)")
    cal.add_argument(
        "--no-feedback",
        action="store_true",
        help="with --from-ledger: shadow checks only, not applications' feedback on the "
        "route's local answers (POST /v1/feedback; counted by default)",
    )
    target = cal.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-strong-share", type=float)
    target.add_argument("--target-quality", type=float)
    cal.add_argument("--policy", type=Path)
    cal.add_argument("--route")
    cal.add_argument("--write", action="store_true", help="apply the change (default: diff)")
    cal.set_defaults(classify_run=_calibrate)
