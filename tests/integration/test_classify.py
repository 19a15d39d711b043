"""`cascade classify train|eval|calibrate` as a user runs them, on real label data."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

import classifiers
from classifiers.datasets import default_root
from tests.integration.test_cli import cascade

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
COLUMNS = ("--weak", WEAK, "--strong", STRONG)
LABELS = Path(__file__).parents[2] / "classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl"
SUBJECTS = ("mmlu_astronomy", "mmlu_marketing", "mmlu_professional_accounting", "mmlu_virology")


def _table(tmp_path: Path) -> Path:
    """A folder of RouteLLM CSVs: three MMLU subjects (one file each) and GSM8K."""
    folder = tmp_path / "table"
    folder.mkdir()
    source = default_root() / "routellm_labels"
    for subject in SUBJECTS[:3]:
        shutil.copy(source / "mmlu" / f"{subject}.csv", folder)
    shutil.copy(source / "gsm8k_responses.csv", folder)
    return folder


def test_train_then_eval_on_held_out_subject_and_rows(tmp_path: Path) -> None:
    table, model = _table(tmp_path), tmp_path / "router.skops"
    result = cascade(
        "classify", "train", "--labels", str(table), *COLUMNS, "--out", str(model),
        "--hold-out-groups", "mmlu_marketing", "--hold-out-share", "0.2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads(model.with_suffix(".json").read_text())
    held = len(meta["held_out"]["prompts"])
    assert meta["training_data"]["rows"] + held == 915 + 152 + 234 + 282
    assert meta["held_out"]["groups"] == ["mmlu_marketing"] and meta["kind"] == "router"

    plot = tmp_path / "curve.svg"
    result = cascade(
        "classify", "eval", "--model", str(model), "--labels", str(table), *COLUMNS,
        "--held-out", "--format", "json", "--plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {(r["benchmark"], r["router"]): r for r in report["rows"]}
    assert sum(rows[(b, "router")]["n"] for b in ("gsm8k", "mmlu")) == held
    assert rows[("all", "router")]["n"] == held
    gsm8k = rows[("gsm8k", "random")]
    assert (gsm8k["apgr"], gsm8k["cpt50"], gsm8k["cpt80"]) == (0.5, 0.5, 0.8)
    oracle = rows[("mmlu", "oracle")]
    assert oracle["cpt50"] < rows[("mmlu", "router")]["cpt50"] <= 1.0
    assert 0.0 <= rows[("all", "router")]["auroc"] <= 1.0
    svg = ET.parse(plot).getroot()
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polyline")) == 3 * 3  # 3 panels

    table_out = cascade("classify", "eval", "--model", str(model), "--labels", str(table), *COLUMNS)
    assert table_out.returncode == 0 and "CPT(50%)" in table_out.stdout


def test_the_artifact_scores_as_its_estimator(tmp_path: Path) -> None:
    table, model = _table(tmp_path), tmp_path / "router.skops"
    trained = cascade("classify", "train", "--labels", str(table), *COLUMNS, "--out", str(model))
    assert trained.returncode == 0, trained.stderr
    router = classifiers.load(model)
    prompts = ["What is 2 + 2?", "Statement 1 | Every group is abelian.\nA. True\nB. False"]
    expected = router.estimator.predict_proba(prompts)[:, 1]
    assert np.allclose([router.score(p) for p in prompts], expected, rtol=0, atol=1e-9)


def test_acceptance_model_from_a_label_run(tmp_path: Path) -> None:
    labels, model = tmp_path / "labels.jsonl", tmp_path / "accept.skops"
    labels.write_text("".join(LABELS.read_text().splitlines(keepends=True)[:600]))
    result = cascade(
        "classify", "train", "--kind", "acceptance", "--labels", str(labels),
        "--hold-out-share", "0.3", "--seed", "1", "--out", str(model),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = cascade(
        "classify", "eval", "--model", str(model), "--labels", str(labels), "--held-out",
        "--format", "json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["strong_assumed_correct"] is True
    routers = {r["router"] for r in report["rows"]}
    assert routers == {"accept", "mean-logprob", "oracle", "random"}

    result = cascade(
        "classify", "calibrate", "--model", str(model), "--labels", str(labels),
        "--target-strong-share", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "escalates 50.0% of 600 labeled prompts" in result.stdout


def test_user_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    table = _table(tmp_path)
    out = str(tmp_path / "m.skops")
    missing = cascade("classify", "train", "--labels", str(table), "--out", out)
    assert missing.returncode == 1 and "--weak COL and --strong COL" in missing.stderr
    wrong = cascade(
        "classify", "train", "--labels", str(table), "--weak", "nope", "--strong", STRONG,
        "--out", out,
    )  # fmt: skip
    assert wrong.returncode == 1 and "no column 'nope'" in wrong.stderr
    group = cascade(
        "classify",
        "train",
        "--labels",
        str(table),
        *COLUMNS,
        "--hold-out-groups",
        "x",
        "--out",
        out,
    )
    assert group.returncode == 1 and "no group(s) ['x']" in group.stderr
    table_model = cascade("classify", "train", "--kind", "acceptance", "--labels", str(table),
                          *COLUMNS, "--out", out)  # fmt: skip
    assert table_model.returncode == 1 and "label run" in table_model.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr + group.stderr + table_model.stderr
