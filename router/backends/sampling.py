"""Token choice from one row of logits, and that token's log-probability (for confidence)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

TOP_K = 40  # candidates kept before top-p when sampling (llama.cpp's default)
# Below this temperature sampling is greedy: dividing logits by a subnormal temperature
# overflows to inf (and NaN probabilities), and the distribution is one-hot anyway.
GREEDY_BELOW = 1e-4


class Gate(Protocol):
    """Which tokens may come next (router/backends/grammar.py's GrammarGate)."""

    def allowed(
        self, ids: npt.NDArray[np.intc], logits: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.intc]: ...


def _top(
    logits: npt.NDArray[np.float32], ids: npt.NDArray[np.intc] | None = None
) -> npt.NDArray[np.intc]:
    """The TOP_K most likely of `ids` (default: every token), most likely first."""
    if ids is None:  # the whole vocabulary: partition the logits row itself, no copy of it
        count = logits.shape[0]
        whole = np.argpartition(logits, -TOP_K)[-TOP_K:] if count > TOP_K else np.arange(count)
        pool = whole.astype(np.intc)
    elif ids.shape[0] > TOP_K:
        pool = ids[np.argpartition(logits[ids], -TOP_K)[-TOP_K:]]
    else:
        pool = ids
    return pool[np.argsort(-logits[pool], kind="stable")]


class Sampler:
    """Greedy at temperature 0, else temperature + top-k + top-p sampling; under a `Gate`,
    only among the tokens it allows.

    The log-probability returned is always the model's own (temperature 1, no truncation,
    no grammar), so confidence does not depend on how the client asked to sample: a token a
    grammar forces that the model would not have written lowers confidence.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        # Any integer seeds (OpenAI allows negative ones): numpy wants a non-negative one.
        self._rng = np.random.default_rng(None if seed is None else seed % 2**64)

    def pick(
        self, logits: npt.NDArray[np.float32], gate: Gate | None = None
    ) -> tuple[int, float] | None:
        """The next token and its log-probability; None when the gate allows no token."""
        best = int(logits.argmax())
        peak = float(logits[best])
        log_norm = peak + float(np.log(np.exp(logits - peak).sum()))
        if gate is None:
            greedy = self.temperature < GREEDY_BELOW
            token = best if greedy else self._sample(logits, _top(logits))
            return token, float(logits[token]) - log_norm
        candidates = gate.allowed(top := _top(logits), logits[top])
        if candidates.shape[0] == 0:  # none of the likeliest: the grammar's whole choice
            every = np.arange(logits.shape[0], dtype=np.intc)
            candidates = _top(logits, gate.allowed(every, logits))
            if candidates.shape[0] == 0:
                return None
        token = (
            int(candidates[0])
            if self.temperature < GREEDY_BELOW
            else self._sample(logits, candidates)
        )
        return token, float(logits[token]) - log_norm

    @staticmethod
    def likeliest(logits: npt.NDArray[np.float32], n: int) -> list[tuple[int, float]]:
        """The `n` likeliest tokens and their log-probabilities (the model's own)."""
        if n <= 0:
            return []
        peak = float(logits.max())
        log_norm = peak + float(np.log(np.exp(logits - peak).sum()))
        top = _top(logits)[:n]
        return [(int(token), float(logits[token]) - log_norm) for token in top]

    def _sample(self, logits: npt.NDArray[np.float32], candidates: npt.NDArray[np.intc]) -> int:
        """Temperature and top-p over `candidates` (most likely first)."""
        scaled = logits[candidates].astype(np.float64) / self.temperature
        probs = np.exp(scaled - scaled[0])
        probs /= probs.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p) + 1)
            candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
        return int(candidates[self._rng.choice(len(candidates), p=probs)])
