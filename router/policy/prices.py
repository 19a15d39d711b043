"""Prices from litellm's bundled model_cost map, read as a file (no `import litellm`: that
costs ~2.8 s and ~200 MB; this JSON is what litellm itself loads with
LITELLM_LOCAL_MODEL_COST_MAP=True)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from router.backends.spec import PriceSpec

_MAP = "model_prices_and_context_window_backup.json"


def load_price_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _MAP
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def litellm_price(price_map: dict[str, Any], model: str) -> PriceSpec | None:
    """USD per 1M tokens for `model` (`openai/gpt-4o-mini` is also tried as `gpt-4o-mini`)."""
    for name in (model, model.split("/", 1)[-1]):
        entry = price_map.get(name)
        if isinstance(entry, dict) and "input_cost_per_token" in entry:
            cached = entry.get("cache_read_input_token_cost")
            return PriceSpec(
                input_per_1m=float(entry["input_cost_per_token"]) * 1e6,
                output_per_1m=float(entry.get("output_cost_per_token", 0.0)) * 1e6,
                cached_input_per_1m=None if cached is None else float(cached) * 1e6,
            )
    return None
