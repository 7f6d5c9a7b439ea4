"""HNSW top-k retrieval against exact search for the MF members (issue 6 item 8).

Two catalogs:
- ml-latest-small: iALS (default config) fitted on every event; every user's top-10 with seen
  items excluded, through the member's own recommend, exact (ann_threshold=None) and HNSW
  (ann_threshold=1), fold-in included.
- synthetic: item factors simulated directly (fitting iALS on a 200k-item catalog would take
  longer than the retrieval it is about): 64 dims, clustered around 512 centres, with log-normal
  norms (the popularity spread MF factors show); each query is the mean of 10 items of one
  cluster, which are also its excluded "seen" items. Retrieval only: index search against a
  dense product + exact top-k.

recall@10 = |HNSW top-10 & exact top-10| / 10, averaged over users; times are per user.

    python benchmarks/bench_ann.py [--data-dir ../shared/datasets] [--items 200000]
        [--queries 2000] [--ef 64,128,256]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsemble.data.movielens import load_movielens
from recsemble.generators.ann import InnerProductIndex
from recsemble.generators.mf import IALS
from recsemble.types import PAD_IDX

K = 10


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    pairs = zip(found, exact, strict=True)
    hits = sum(len(set(f[f != PAD_IDX]) & set(e[e != PAD_IDX])) for f, e in pairs)
    return hits / max(1, int((exact != PAD_IDX).sum()))


def _with_ann(fitted: IALS, ef_search: int) -> IALS:
    """The fitted model's state under a config that always searches the HNSW index."""
    model = IALS(fitted.config, ann_threshold=1, ann_ef_search=ef_search)
    model._set_state(fitted._state())
    model.n_users_, model.n_items_, model.now_ = fitted.n_users_, fitted.n_items_, fitted.now_
    model.histories_ = fitted.histories_
    return model


def bench_movielens(data_dir: str, efs: list[int]) -> None:
    data = load_movielens("ml-latest-small", data_dir, download=False)
    exact_model = IALS(ann_threshold=None).fit(data)
    users = np.arange(data.n_users)
    start = time.perf_counter()
    exact = exact_model.recommend(users, K).items
    exact_s = time.perf_counter() - start
    print(f"\nml-latest-small: {data.n_items} items, {users.size} users, iALS 64 factors")
    print(f"  exact  recommend: {exact_s / users.size * 1e3:.3f} ms/user")
    for ef in efs:
        model = _with_ann(exact_model, ef)
        start = time.perf_counter()
        model._ann_index("user", model.item_factors_)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        found = model.recommend(users, K).items
        ann_s = time.perf_counter() - start
        print(
            f"  hnsw ef={ef:<4} recommend: {ann_s / users.size * 1e3:.3f} ms/user, "
            f"recall@10 {recall(found, exact):.4f} (build {build_s:.1f} s)"
        )


def synthetic(n_items: int, n_queries: int, seed: int = 0) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((512, 64)).astype(np.float32)
    cluster = rng.integers(0, 512, n_items)
    items = centres[cluster] + 0.8 * rng.standard_normal((n_items, 64)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, (n_items, 1)).astype(np.float32) / np.sqrt(64)
    members = [np.flatnonzero(cluster == c) for c in range(512)]
    seen = np.stack([rng.choice(members[rng.integers(512)], 10) for _ in range(n_queries)])
    queries = items[seen].mean(axis=1)
    seen = np.sort(seen, axis=1)
    exclude = sp.csr_array(
        (np.ones(seen.size, np.float32), seen.ravel(), np.arange(n_queries + 1) * 10),
        shape=(n_queries, n_items),
    )
    exclude.sum_duplicates()
    return items, queries, exclude


def bench_synthetic(n_items: int, n_queries: int, efs: list[int]) -> None:
    items, queries, exclude = synthetic(n_items, n_queries)
    exact_index = InnerProductIndex(items, hnsw_threshold=None)
    start = time.perf_counter()
    exact = np.concatenate(
        [
            exact_index.exact(queries[lo : lo + 256], K, exclude[lo : lo + 256])[0]
            for lo in range(0, n_queries, 256)
        ]
    )
    exact_s = time.perf_counter() - start
    print(f"\nsynthetic: {n_items} items x 64 dims, {n_queries} queries, 10 excluded each")
    print(f"  exact (dense product + top-k): {exact_s / n_queries * 1e3:.3f} ms/query")
    start = time.perf_counter()
    index = InnerProductIndex(items, hnsw_threshold=1)
    print(f"  hnsw build (M=32, efConstruction=100, 1 thread): {time.perf_counter() - start:.1f} s")
    for ef in efs:
        index._index.hnsw.efSearch = ef
        start = time.perf_counter()
        found, _ = index.search(queries, K, exclude)
        ann_s = time.perf_counter() - start
        print(
            f"  hnsw ef={ef:<4}: {ann_s / n_queries * 1e3:.3f} ms/query, "
            f"recall@10 {recall(found, exact):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--ef", default="64,128,256")
    args = parser.parse_args()
    print("$ python " + shlex.join(sys.argv))
    efs = [int(ef) for ef in args.ef.split(",")]
    bench_movielens(args.data_dir, efs)
    bench_synthetic(args.items, args.queries, efs)


if __name__ == "__main__":
    main()
