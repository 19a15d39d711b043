"""Benchmark (p): a pre-router refitted from the ledger's shadow checks (feature vectors and
verdicts, no prompts) against the bundled one fitted on the same rows' text and labels.

    python bench/ledger_refit.py

Rows: the bundled label run. The rows the bundled pre-router trained on become shadow checks
in a JSONL ledger, as the server writes them (`kind: shadow`, route `auto`, a third each
`accepted`, `escalated` and `skipped`, verdict `agree` when the local answer was right, the
prompt's feature vector rounded as records store it, no prompt). `ledger_rows` reads them
back and `train_vectors` fits a router on them (what `cascade classify train --from-ledger
--kind router` runs), with nothing held out of the ledger. Both models then score the rows
the bundled pre-router held out: AUROC for "the local answer is right", and how far apart
their scores are.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import orjson

from bench.common import append_results
from classifiers.artifacts import bundled_path, load_router
from classifiers.examples import prompt_id
from classifiers.features import acceptance_features, prompt_features
from classifiers.metrics import auroc
from classifiers.train import train_vectors
from router.shadow.calibrate import ledger_rows

LABELS = Path("classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl")
_KINDS = ("accepted", "escalated", "skipped")


def shadow_record(n: int, row: dict[str, object], logprobs: list[float]) -> dict[str, object]:
    prompt, answer = str(row["prompt"]), str(row["answer"])
    return {
        "kind": "shadow",
        "request_id": f"shadow-{n}",
        "shadow_of": f"req-{n}",
        "ts": "2026-12-02T00:00:00.000Z",
        "team": "bench",
        "route": "auto",
        "local_outcome": _KINDS[n % 3],
        "verdict": "agree" if row["correct"] else "disagree",
        "features": {
            "prompt": [round(v, 6) for v in prompt_features(prompt)],
            "acceptance": [
                round(v, 6)
                for v in acceptance_features(prompt, answer, logprobs, str(row["finish_reason"]))
            ],
        },
        "prompt": None,
    }


def main() -> None:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()]
    metadata = json.loads(bundled_path("prerouter").with_suffix(".json").read_text())
    held_ids = set(metadata["held_out"]["prompts"])
    held = np.array([prompt_id(r["prompt"]) in held_ids for r in rows])
    right = np.array([bool(r["correct"]) for r in rows])
    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "ledger.jsonl"
        with ledger.open("wb") as out:
            for n, row in enumerate(rows):
                if held[n]:
                    continue
                logprobs = row["logprobs"]
                logprobs = json.loads(logprobs) if isinstance(logprobs, str) else logprobs
                out.write(orjson.dumps(shadow_record(n, row, logprobs)) + b"\n")
        found = ledger_rows(f"jsonl:///{ledger}", "auto", "router")
        artifact = Path(folder) / "refit.skops"
        train_vectors(
            "router",
            found.vectors,
            found.agree,
            found.ids,
            artifact,
            source="bench",
            hold_out_share=0.0,
        )
        refit = load_router(artifact)
    bundled = load_router("prerouter")
    prompts = [r["prompt"] for r, h in zip(rows, held, strict=True) if h]
    ours = np.array([refit.score(p) for p in prompts])
    theirs = np.array([bundled.score(p) for p in prompts])
    table = [
        [
            "bundled pre-router (fitted on text + graded labels)",
            f"{int((~held).sum()):,}",
            f"{auroc(theirs, right[held]):.4f}",
            "—",
        ],
        [
            "refit from the ledger (feature vectors + shadow verdicts, no prompts)",
            f"{len(found.agree):,}",
            f"{auroc(ours, right[held]):.4f}",
            f"{np.abs(ours - theirs).max():.2e}",
        ],
    ]
    print(table)
    append_results(
        "(p) A pre-router refitted from the ledger against one fitted on text",
        ["router", "training rows", "held-out AUROC", "max |score difference|"],
        table,
        notes=f"bench/ledger_refit.py: the bundled label run; {int(held.sum())} held-out "
        "rows (the bundled pre-router's own held-out quarter), scored by both. The ledger "
        "holds the training rows as shadow checks (a third each accepted, escalated, skipped; "
        "verdict = the local answer was right), their prompt features rounded to 6 places "
        "as records store them.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
