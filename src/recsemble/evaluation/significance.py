"""Paired per-user comparison of systems. Spec: benchmark-protocol.md, "Slices and significance".

Decisions the protocol leaves open:
- Users whose value is NaN in either array (e.g. ILD of a one-item list) are dropped as a pair;
  n_users counts the pairs kept. Fewer than 2 pairs is an error.
- The CI is the percentile bootstrap of the mean difference: resample users with replacement
  `n_resamples` times from numpy.random.default_rng(seed), take the (1 - confidence)/2 and
  (1 + confidence)/2 quantiles of the resampled means (numpy's default linear interpolation).
  Index draws come in chunks of a fixed size for a given n_users, so results are reproducible.
- p_ttest: scipy.stats.ttest_rel; 1.0 when every difference is 0, 0.0 when every difference is
  the same non-zero value (infinite t). p_wilcoxon: scipy.stats.wilcoxon(zero_method="wilcox"),
  1.0 when every difference is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from recsemble.evaluation.slices import ALL, slice_order

F64 = npt.NDArray[np.float64]
# Index draws per bootstrap chunk: 8 MiB of int64 measured fastest (bigger chunks leave cache).
_BOOTSTRAP_CHUNK_DRAWS = 1 << 20


def _paired(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[F64, F64]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired arrays must be 1-d of one length, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def bootstrap_means(diff: F64, n_resamples: int, seed: int) -> F64:
    """Means of `n_resamples` resamples (users drawn with replacement) of `diff`."""
    n = diff.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    rows = max(1, _BOOTSTRAP_CHUNK_DRAWS // max(n, 1))
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    return means


def _p_values(diff: F64, x: F64, y: F64) -> tuple[float, float]:
    if not diff.any():
        return 1.0, 1.0
    p_wilcoxon = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    if np.ptp(diff) == 0.0:
        return 0.0, p_wilcoxon  # zero variance, non-zero mean: t is infinite
    return float(stats.ttest_rel(x, y).pvalue), p_wilcoxon


def paired_comparison(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Compare per-user values of a system (a) and a baseline (b) over the same users.

    Keys: n_users, mean_a, mean_b, mean_diff (a - b), ci_low, ci_high, confidence, n_resamples,
    p_ttest, p_wilcoxon.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x, y = _paired(a, b)
    if x.shape[0] < 2:
        raise ValueError(f"a paired comparison needs >= 2 users without NaN, got {x.shape[0]}")
    diff = x - y
    alpha = 1.0 - confidence
    low, high = np.quantile(bootstrap_means(diff, n_resamples, seed), [alpha / 2, 1 - alpha / 2])
    p_ttest, p_wilcoxon = _p_values(diff, x, y)
    return {
        "n_users": int(x.shape[0]),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "p_ttest": p_ttest,
        "p_wilcoxon": p_wilcoxon,
    }


def compare_per_slice(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    order: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """paired_comparison for "all" and every slice (same order as sliced_summary), each with the
    same seed; slices with fewer than 2 users (after dropping NaN pairs) are left out."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    label_arr = np.asarray(labels).astype(str)
    if label_arr.shape != x.shape:
        raise ValueError(f"{label_arr.shape[0]} labels for {x.shape[0]} users")
    groups = {ALL: np.ones(label_arr.shape, dtype=np.bool_)}
    groups.update({name: label_arr == name for name in slice_order(label_arr, order)})
    out: dict[str, dict[str, float]] = {}
    for name, mask in groups.items():
        usable = mask & ~(np.isnan(x) | np.isnan(y))
        if usable.sum() >= 2:
            out[name] = paired_comparison(
                x[mask], y[mask], n_resamples=n_resamples, seed=seed, confidence=confidence
            )
    return out
