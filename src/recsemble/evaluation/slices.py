"""Metrics per user slice. Spec: benchmark-protocol.md, section "Slices and significance".

The keys are written to results.json under `slices`, so they are fixed: "all" first, then the
history slices "cold", "1-4", "5-19", "20-99", "100+" (train history length 0, 1-4, 5-19,
20-99, >= 100), every one always present. An empty slice has n_users 0 and NaN metrics.
Each slice's dict holds `n_users`, every key of MetricResult.summary() (coverage counts the
distinct items in that slice's lists only) and `longtail_hit_share@{k}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from recsemble.evaluation.metrics import MetricResult

#: Key of the slice holding every evaluated user.
ALL = "all"
#: History slice labels in report order.
HISTORY_SLICES = ("cold", "1-4", "5-19", "20-99", "100+")
# Lower bounds of slices 2..5: searchsorted(side="right") maps a length to its slice position.
_HISTORY_EDGES = np.array([1, 5, 20, 100], dtype=np.int64)


def history_slice_labels(history_lengths: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """The history slice label of each user from their number of train interactions."""
    lengths = np.asarray(history_lengths)
    if lengths.ndim != 1 or not (lengths.size == 0 or np.issubdtype(lengths.dtype, np.integer)):
        raise ValueError(f"history_lengths must be a 1-d integer array, got {lengths.dtype}")
    if lengths.size and lengths.min() < 0:
        raise ValueError("history_lengths must be non-negative")
    positions = np.searchsorted(_HISTORY_EDGES, lengths.astype(np.int64), side="right")
    labels: npt.NDArray[np.str_] = np.asarray(HISTORY_SLICES)[positions]
    return labels


def slice_order(labels: npt.ArrayLike, order: Sequence[str] | None = None) -> tuple[str, ...]:
    """The slices to report, in order: `order` if given, else HISTORY_SLICES when every label is
    a history label, else the distinct labels sorted. Labels outside `order` are an error."""
    present = {str(label) for label in np.unique(np.asarray(labels))}
    if ALL in present:
        raise ValueError(f"{ALL!r} is reserved for the slice of every user")
    if order is None:
        return HISTORY_SLICES if present <= set(HISTORY_SLICES) else tuple(sorted(present))
    missing = present - set(order)
    if missing:
        raise ValueError(f"labels {sorted(missing)} are not in the slice order {list(order)}")
    return tuple(order)


def longtail_hit_share(result: MetricResult) -> float:
    """Hits on long-tail items / all hits, pooled over users; NaN when there is no hit."""
    hits = int(result.n_hits.sum())
    return int(result.n_longtail_hits.sum()) / hits if hits else math.nan


def slice_summary(result: MetricResult) -> dict[str, float]:
    """n_users, the summary metrics and the long-tail hit share of one group of users."""
    out: dict[str, float] = {"n_users": result.n_users}
    out.update(result.summary())
    out[f"longtail_hit_share@{result.k}"] = longtail_hit_share(result)
    return out


def sliced_summary(
    result: MetricResult, labels: npt.ArrayLike, *, order: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """{"all": ..., slice: ...} for every slice of `slice_order(labels, order)`.

    labels[u] is the slice of result's u-th user (e.g. from history_slice_labels).
    """
    label_arr = np.asarray(labels).astype(str)
    if label_arr.shape != (result.n_users,):
        raise ValueError(f"{label_arr.shape[0]} labels for {result.n_users} users")
    out = {ALL: slice_summary(result)}
    for name in slice_order(label_arr, order):
        out[name] = slice_summary(result.subset(label_arr == name))
    return out
