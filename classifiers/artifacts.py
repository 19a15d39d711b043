"""Save and load classifier artifacts: skops (never pickle) plus a JSON metadata file.

`NAME.skops` holds the fitted pipeline; `NAME.json` beside it says what it is: kind,
version (the first 12 hex of the skops file's SHA-256, checked at load), scikit-learn
version, training data hash, label definition, features and metrics. Loading trusts only
this package's own feature transformers beyond what skops trusts by default.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from sklearn.pipeline import Pipeline

from classifiers.model import Acceptance, Router

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
    metadata_path(path).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def _read(path: Path) -> tuple[Pipeline, dict[str, Any]]:
    import skops.io

    if not path.is_file():
        raise ArtifactError(f"{path}: no such classifier artifact")
    try:
        metadata = json.loads(metadata_path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{metadata_path(path)}: unreadable metadata ({exc})") from exc
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != metadata.get("sha256"):
        raise ArtifactError(f"{path}: does not match the sha256 in its metadata")
    untrusted = set(skops.io.get_untrusted_types(data=data))
    if not untrusted <= TRUSTED:
        raise ArtifactError(f"{path}: refusing untrusted types {sorted(untrusted - TRUSTED)}")
    try:
        estimator = skops.io.loads(data, trusted=sorted(untrusted))
    except Exception as exc:  # skops raises many kinds on a malformed file
        raise ArtifactError(f"{path}: cannot load ({exc})") from exc
    if not isinstance(estimator, Pipeline):
        raise ArtifactError(f"{path}: not a cascade classifier pipeline")
    return estimator, metadata


def _load(reference: str | Path | None, default: str, kind: str) -> tuple[Pipeline, dict[str, Any]]:
    path = resolve(default if reference is None else str(reference))
    estimator, metadata = _read(path)
    if metadata.get("kind") != kind:
        raise ArtifactError(f"{path}: its kind is '{metadata.get('kind')}', not '{kind}'")
    return estimator, metadata


def load_router(reference: str | Path | None = None) -> Router:
    return Router(*_load(reference, DEFAULT_ROUTER, ROUTER))


def load_acceptance(reference: str | Path | None = None) -> Acceptance:
    return Acceptance(*_load(reference, DEFAULT_ACCEPTANCE, ACCEPTANCE))


def load_any(reference: str | Path) -> Router | Acceptance:
    estimator, metadata = _read(resolve(str(reference)))
    if metadata.get("kind") == ACCEPTANCE:
        return Acceptance(estimator, metadata)
    return Router(estimator, metadata)
