"""Time the full top-k metric computation and the paired bootstrap at benchmark scale.

100,000 users x k=10 random lists over a 50,000-item catalog, ~20 relevant items per user,
20 item categories (ILD included). Exits non-zero when the metrics take longer than the budget.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recsemble.evaluation.metrics import CatalogStats, MetricResult, compute_metrics
from recsemble.evaluation.significance import paired_comparison

METRICS_BUDGET_S = 2.0


def _random_lists(rng: np.random.Generator, n_rows: int, n_items: int, width: int) -> np.ndarray:
    """n_rows rows of `width` distinct items each (rows with a repeat are redrawn)."""
    out = rng.integers(0, n_items, size=(n_rows, width))
    while True:
        ordered = np.sort(out, axis=1)
        bad = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if bad.size == 0:
            return out
        out[bad] = rng.integers(0, n_items, size=(bad.size, width))


def make_data(
    n_users: int, n_items: int, k: int, n_cats: int, seed: int
) -> tuple[np.ndarray, sp.csr_array, CatalogStats]:
    rng = np.random.default_rng(seed)
    recs = _random_lists(rng, n_users, n_items, k)
    # 20 distinct relevant items per user; for half the users one of them is a recommended item,
    # so hits happen at every rank (uniform truth alone would almost never be hit).
    truth_items = _random_lists(rng, n_users, n_items, 20)
    lucky = rng.random(n_users) < 0.5
    truth_items[lucky, 0] = recs[lucky, rng.integers(0, k, size=int(lucky.sum()))]
    rows = np.repeat(np.arange(n_users), truth_items.shape[1])
    truth = sp.csr_array(
        (np.ones(rows.size), (rows, truth_items.ravel())), shape=(n_users, n_items)
    )
    item_cats = _random_lists(rng, n_items, n_cats, 2)
    cats = sp.csr_array(
        (np.ones(item_cats.size), (np.repeat(np.arange(n_items), 2), item_cats.ravel())),
        shape=(n_items, n_cats),
    )
    stats = CatalogStats(
        item_popularity=rng.integers(0, 5000, size=n_items),
        n_train_users=n_users,
        n_items=n_items,
        item_categories=cats,
    )
    return recs, truth, stats


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    recs, truth, stats = make_data(args.users, args.items, args.k, args.categories, seed=0)
    results: list[MetricResult] = []

    def run_metrics() -> None:
        results.append(compute_metrics(recs, truth, args.k, stats))
        results[-1].summary()

    metrics_s = best_of(run_metrics, args.repeats)
    ndcg = results[-1].ndcg
    baseline = np.roll(ndcg, 1)  # a same-shaped per-user array to compare against
    bootstrap_s = best_of(
        lambda: paired_comparison(ndcg, baseline, n_resamples=args.resamples), args.repeats
    )

    print("command: python " + shlex.join(sys.argv))
    print(
        f"data: {args.users:,} users x k={args.k}, {args.items:,} items, ~20 relevant per user, "
        f"{args.categories} categories"
    )
    print(f"metrics (all, incl. ILD + summary), best of {args.repeats}: {metrics_s:.3f} s")
    print(
        f"paired comparison ({args.resamples} bootstrap resamples + t + Wilcoxon), best of "
        f"{args.repeats}: {bootstrap_s:.3f} s"
    )
    print("summary: " + ", ".join(f"{k}={v:.4f}" for k, v in results[-1].summary().items()))
    if metrics_s > METRICS_BUDGET_S:
        print(f"FAIL: metrics took {metrics_s:.3f} s > {METRICS_BUDGET_S} s budget")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
