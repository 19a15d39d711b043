"""Token choice from one row of logits, and that token's log-probability (for confidence)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TOP_K = 40  # candidates kept before top-p when sampling (llama.cpp's default)
# Below this temperature sampling is greedy: dividing logits by a subnormal temperature
# overflows to inf (and NaN probabilities), and the distribution is one-hot anyway.
GREEDY_BELOW = 1e-4


class Sampler:
    """Greedy at temperature 0, else temperature + top-k + top-p sampling.

    The log-probability returned is always the model's own (temperature 1, no truncation),
    so confidence does not depend on how the client asked to sample.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        # Any integer seeds (OpenAI allows negative ones): numpy wants a non-negative one.
        self._rng = np.random.default_rng(None if seed is None else seed % 2**64)

    def pick(self, logits: npt.NDArray[np.float32]) -> tuple[int, float]:
        best = int(logits.argmax())
        peak = float(logits[best])
        log_norm = peak + float(np.log(np.exp(logits - peak).sum()))
        token = best if self.temperature < GREEDY_BELOW else self._sample(logits)
        return token, float(logits[token]) - log_norm

    def _sample(self, logits: npt.NDArray[np.float32]) -> int:
        k = min(TOP_K, logits.shape[0])
        candidates = np.argpartition(logits, -k)[-k:]
        scaled = logits[candidates].astype(np.float64) / self.temperature
        order = np.argsort(-scaled)
        candidates, scaled = candidates[order], scaled[order]
        probs = np.exp(scaled - scaled[0])
        probs /= probs.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p) + 1)
            candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
        return int(candidates[self._rng.choice(len(candidates), p=probs)])
