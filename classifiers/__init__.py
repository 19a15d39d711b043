"""Prompt-complexity routers and answer-acceptance models (scikit-learn, skops artifacts).

import classifiers
router = classifiers.load()          # the bundled pre-router
router.score("What is 2 + 2?")       # P(the small tier suffices), as predict_proba
router.estimator                     # the fitted scikit-learn Pipeline it mirrors
"""

from __future__ import annotations

from pathlib import Path

from classifiers.artifacts import ArtifactError, load_acceptance, load_router
from classifiers.model import Acceptance, Router

__all__ = ["Acceptance", "ArtifactError", "Router", "load", "load_acceptance"]


def load(path: str | Path | None = None) -> Router:
    """A router artifact: a `.skops` path, a bundled name, or (None) the default pre-router."""
    return load_router(path)
