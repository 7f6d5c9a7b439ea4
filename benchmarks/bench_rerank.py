"""Per-list latency of the re-ranking stages: 300 candidates in, 10 out (issue 5 speed goal).

The catalog (item categories, titles, interactions) is ml-latest-small's, so item vectors have
its real shape: 20 genres for "category", 64 SVD dimensions for "embedding". Candidate lists
are random draws of 300 distinct items with random scores and a random 50-item history; each
stage re-ranks the same lists. Prints median, p95 and p99 milliseconds per list.

    python benchmarks/bench_rerank.py [--data-dir ../shared/datasets] [--lists 2000]
        [--candidates 300] [--k 10] [--json out/bench-rerank.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.data import load_dataset
from recsemble.rerank import Query, RerankConfig, Reranker, build_stages
from recsemble.types import ItemList

# (label, stage name, settings): the diversity stages the goal names first.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("mmr category", "mmr", {"similarity": "category"}),
    ("mmr category jaccard", "mmr", {"similarity": "category", "measure": "jaccard"}),
    ("mmr embedding-64", "mmr", {"similarity": "embedding", "dims": 64}),
    ("dpp category", "dpp", {"similarity": "category"}),
    ("dpp embedding-64", "dpp", {"similarity": "embedding", "dims": 64}),
    ("calibrated", "calibrated", {}),
    ("cap", "cap", {}),
    ("fair", "fair", {}),
    ("explore thompson", "explore", {"method": "thompson"}),
    ("fresh", "fresh", {}),
]


def _stage(dataset: Any, name: str, settings: dict[str, Any]) -> Reranker:
    config = RerankConfig.model_validate({name: settings})
    stage = build_stages(config, [name])[0]
    return stage.fit(dataset)


def _timings(stage: Reranker, lists: list[tuple[Query, ItemList]], k: int) -> np.ndarray:
    for query, items in lists[:20]:  # warm caches and lazy imports
        stage.rerank(query, items, k)
    out = np.empty(len(lists))
    for i, (query, items) in enumerate(lists):
        start = time.perf_counter()
        stage.rerank(query, items, k)
        out[i] = time.perf_counter() - start
    return out * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--lists", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    rng = np.random.default_rng(0)
    lists = []
    for user in range(args.lists):
        items = rng.choice(dataset.n_items, args.candidates, replace=False).astype(np.int32)
        scores = np.sort(rng.normal(size=args.candidates))[::-1].astype(np.float32)
        history = rng.choice(dataset.n_items, 50, replace=False).astype(np.int32)
        lists.append((Query(user % dataset.n_users, None, history), ItemList(items, scores)))
    print(f"{args.dataset}: {dataset.n_items} items; {args.lists} lists of {args.candidates} "
          f"candidates -> top {args.k}")  # fmt: skip
    print(f"{'stage':20s} {'median ms':>10s} {'p95 ms':>8s} {'p99 ms':>8s}")
    figures = {}
    for label, name, settings in CASES:
        ms = _timings(_stage(dataset, name, settings), lists, args.k)
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        figures[label] = {"median_ms": p50, "p95_ms": p95, "p99_ms": p99}
        print(f"{label:20s} {p50:10.3f} {p95:8.3f} {p99:8.3f}")
    print("command:", shlex.join([sys.executable, *sys.argv]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
