"""The fast scorer mirrors predict_proba; artifacts load only when intact and trusted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import classifiers
from classifiers.artifacts import ArtifactError, bundled_path, load_acceptance, load_any, save
from classifiers.datasets import default_root
from classifiers.examples import load_examples
from classifiers.tables import load_table

LABELS = Path(__file__).parents[2] / "classifiers" / "artifacts"
LABELS = LABELS / "labels-smollm2-135m-q4_1.jsonl"


def _prompts(n: int = 1000) -> list[str]:
    table = load_table(default_root() / "routellm_labels")
    rng = np.random.default_rng(1)
    picked = [table.prompts[i][:2000] for i in rng.choice(len(table.prompts), n, replace=False)]
    return [*picked[:-3], "", "ünïcödé ✓ 42%", "A" * 2000]


@pytest.mark.parametrize("name", ["prerouter", "routellm-mixtral-gpt4"])
def test_router_score_matches_predict_proba(name: str) -> None:
    router = classifiers.load(name)
    prompts = _prompts()
    expected = router.estimator.predict_proba(prompts)[:, 1]
    ours = np.array([router.score(p) for p in prompts])
    assert np.max(np.abs(ours - expected)) <= 1e-9
    assert 0.0 <= ours.min() < ours.max() <= 1.0  # probabilities, not a constant


def test_acceptance_score_matches_predict_proba() -> None:
    model = load_acceptance()
    answers = load_examples(LABELS).answers
    assert answers is not None and len(answers) >= 1000
    sample = answers[:1000]
    expected = model.estimator.predict_proba(sample)[:, 1]
    ours = np.array([model.score(*a) for a in sample])
    assert np.max(np.abs(ours - expected)) <= 1e-9


def test_default_load_is_the_prerouter_with_metadata() -> None:
    router = classifiers.load()
    assert router.name == "prerouter" and router.kind == "router"
    assert isinstance(router.estimator, Pipeline)
    meta = router.metadata
    assert meta["sklearn_version"] and meta["training_data"]["sha256"]
    assert len(meta["version"]) == 12 and meta["sha256"].startswith(meta["version"])


def _copy(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.skops"
    shutil.copy(bundled_path(name), path)
    shutil.copy(bundled_path(name).with_suffix(".json"), path.with_suffix(".json"))
    return path


def test_altered_artifact_is_refused(tmp_path: Path) -> None:
    path = _copy("prerouter", tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        classifiers.load(path)


def test_artifact_with_untrusted_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.skops"
    pipeline = Pipeline([("f", FunctionTransformer(func=shutil.rmtree))])
    save(pipeline, {"name": "evil", "kind": "router"}, path)
    assert "shutil.rmtree" in skops.io.get_untrusted_types(file=path)
    with pytest.raises(ArtifactError, match="untrusted"):
        classifiers.load(path)


def test_wrong_kind_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="its kind is 'acceptance', not 'router'"):
        classifiers.load("acceptance")
    with pytest.raises(ArtifactError, match="no such"):
        classifiers.load(tmp_path / "absent.skops")
    path = _copy("acceptance", tmp_path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(ArtifactError, match="metadata"):
        load_any(path)
    assert json.loads(bundled_path("acceptance").with_suffix(".json").read_text())["kind"] == (
        "acceptance"
    )


def test_the_served_scorer_is_the_folded_pipeline_and_is_checked(tmp_path: Path) -> None:
    """Serving scores from the weights in the metadata; they are the pipeline's own."""
    from classifiers.model import fold

    for name in ("prerouter", "acceptance", "routellm-mixtral-gpt4"):
        metadata = json.loads(bundled_path(name).with_suffix(".json").read_text())
        loaded = load_any(bundled_path(name))
        folded = fold(loaded.estimator)
        assert metadata["scorer"]["weights"] == pytest.approx(folded["weights"], abs=1e-12)
        assert metadata["scorer"]["intercept"] == pytest.approx(folded["intercept"], abs=1e-12)
    path = _copy("prerouter", tmp_path)
    metadata = json.loads(path.with_suffix(".json").read_text())
    metadata["scorer"]["weights"] = metadata["scorer"]["weights"][:-1]
    path.with_suffix(".json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="malformed scorer"):
        classifiers.load(path)
