"""Save and load classifier artifacts: skops (never pickle) plus a JSON metadata file.

`NAME.skops` holds the fitted pipeline; `NAME.json` beside it says what it is: kind,
version (the first 12 hex of the skops file's SHA-256, checked at load), scikit-learn
version, training data hash, label definition, features, metrics, and `scorer` (the
pipeline's folded linear weights). Loading for scoring reads the metadata and checks the
skops file's hash without importing scikit-learn or skops; the pipeline itself is loaded
only when `.estimator` is asked for, trusting only this package's own feature transformers
beyond what skops trusts by default.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifiers.model import Acceptance, Router, fold

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ROUTER = "router"
ACCEPTANCE = "acceptance"
TRUSTED = frozenset(
    {"classifiers.estimators.PromptFeatures", "classifiers.estimators.AnswerFeatures"}
)
BUNDLED = ("prerouter", "acceptance", "routellm-mixtral-gpt4")
DEFAULT_ROUTER = "prerouter"
DEFAULT_ACCEPTANCE = "acceptance"


class ArtifactError(Exception):
    """An artifact that is missing, altered, of the wrong kind or not loadable."""


def bundled_path(name: str) -> Path:
    """Where a default artifact shipped with the package lies."""
    return Path(str(resources.files("classifiers") / "artifacts" / f"{name}.skops"))


def resolve(reference: str) -> Path:
    """A bundled artifact's name (`prerouter`) or a path to a `.skops` file."""
    return bundled_path(reference) if reference in BUNDLED else Path(reference)


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save(estimator: Pipeline, metadata: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the skops file and its metadata; returns the metadata with the version set."""
    import skops.io

    path.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(estimator, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    full = {**metadata, "version": digest[:12], "sha256": digest}
    if {"scale", "model"} <= set(estimator.named_steps):  # a linear pipeline: serve it folded
        full["scorer"] = fold(estimator)
    metadata_path(path).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def _metadata(path: Path) -> dict[str, Any]:
    """The metadata of the skops file at `path`, after checking the file's SHA-256."""
    if not path.is_file():
        raise ArtifactError(f"{path}: no such classifier artifact")
    try:
        metadata = json.loads(metadata_path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{metadata_path(path)}: unreadable metadata ({exc})") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{metadata_path(path)}: not a metadata object")
    if hashlib.sha256(path.read_bytes()).hexdigest() != metadata.get("sha256"):
        raise ArtifactError(f"{path}: does not match the sha256 in its metadata")
    return metadata


def _estimator(path: Path) -> Pipeline:
    """The skops pipeline (imports scikit-learn): untrusted types refused."""
    import skops.io
    from sklearn.pipeline import Pipeline

    data = path.read_bytes()
    untrusted = set(skops.io.get_untrusted_types(data=data))
    if not untrusted <= TRUSTED:
        raise ArtifactError(f"{path}: refusing untrusted types {sorted(untrusted - TRUSTED)}")
    try:
        estimator = skops.io.loads(data, trusted=sorted(untrusted))
    except Exception as exc:  # skops raises many kinds on a malformed file
        raise ArtifactError(f"{path}: cannot load ({exc})") from exc
    if not isinstance(estimator, Pipeline):
        raise ArtifactError(f"{path}: not a cascade classifier pipeline")
    return estimator


def _scorer(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """The folded weights from the metadata (checked for shape); an artifact saved before
    metadata carried them is folded from its pipeline (which imports scikit-learn)."""
    scorer = metadata.get("scorer")
    if scorer is None:
        return fold(_estimator(path))
    weights = scorer.get("weights") if isinstance(scorer, dict) else None
    features = metadata.get("features")
    if (
        not isinstance(weights, list)
        or not isinstance(features, list)
        or len(weights) != len(features)
        or not all(isinstance(w, int | float) for w in weights)
        or not isinstance(scorer.get("intercept"), int | float)
    ):
        raise ArtifactError(f"{metadata_path(path)}: malformed scorer")
    return {"weights": weights, "intercept": scorer["intercept"]}


def _read(path: Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    metadata = _metadata(path)
    if kind is not None and metadata.get("kind") != kind:
        raise ArtifactError(f"{path}: its kind is '{metadata.get('kind')}', not '{kind}'")
    return _scorer(path, metadata), metadata


def load_router(reference: str | Path | None = None) -> Router:
    path = resolve(DEFAULT_ROUTER if reference is None else str(reference))
    scorer, metadata = _read(path, ROUTER)
    return Router(scorer, metadata, lambda: _estimator(path))


def load_acceptance(reference: str | Path | None = None) -> Acceptance:
    path = resolve(DEFAULT_ACCEPTANCE if reference is None else str(reference))
    scorer, metadata = _read(path, ACCEPTANCE)
    return Acceptance(scorer, metadata, lambda: _estimator(path))


def load_any(reference: str | Path) -> Router | Acceptance:
    """Either kind, pipeline loaded and checked now (for training and evaluation tools)."""
    path = resolve(str(reference))
    scorer, metadata = _read(path)
    estimator = _estimator(path)
    if metadata.get("kind") == ACCEPTANCE:
        return Acceptance(scorer, metadata, lambda: estimator)
    return Router(scorer, metadata, lambda: estimator)
