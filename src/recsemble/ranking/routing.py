"""Routing by context: which scorer serves each history slice, decided on the validation window.

The ranker's validation quality is measured out of fold (each request scored by a ranker that
did not train on it), each member's from its own ranks; a slice where a member beats the ranker
by more than the noise of the comparison (its paired gain's standard errors) is served by that
member alone, so the ensemble wins or ties in every slice it has evidence for, and the other
members are not run there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from recsemble.evaluation.slices import HISTORY_SLICES, history_slice_labels

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
RANKER = "ranker"


@dataclass(frozen=True)
class SliceBoard:
    """Validation NDCG@k per history slice and scorer ("ranker" or a member label); gain_se:
    per slice and member, the standard error of its paired per-request gain over the ranker
    (known at fit only, not saved)."""

    ndcg: dict[str, dict[str, float]]
    users: dict[str, int]
    gain_se: dict[str, dict[str, float]] = field(default_factory=dict)


def request_ndcg(
    rows: I64, scores: F64, labels: npt.NDArray[np.int8], targets: I64, k: int = 10
) -> F64:
    """NDCG@k of each request when its candidates are ordered by `scores` (NaN: left out)."""
    n_rows = targets.size
    usable = np.isfinite(scores)
    r, s, y = rows[usable], scores[usable], labels[usable].astype(np.float64)
    order = np.lexsort((-s, r))
    r, y = r[order], y[order]
    position = np.arange(r.size) - np.searchsorted(r, r)
    top = position < k
    gains = y[top] / np.log2(position[top] + 2.0)
    dcg = np.bincount(r[top], weights=gains, minlength=n_rows)
    discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    ideal = np.where(targets > 0, discounts[np.clip(targets, 1, k) - 1], np.nan)
    out: F64 = dcg / ideal
    return out


def slice_board(
    rows: I64,
    labels: npt.NDArray[np.int8],
    targets: I64,
    history_lengths: I64,
    ranker_scores: F64,
    member_ranks: npt.NDArray[np.float32],
    members: list[str],
) -> SliceBoard:
    """Per-slice mean validation NDCG@10 of the ranker (out-of-fold scores) and every member."""
    per_request = {RANKER: request_ndcg(rows, ranker_scores, labels, targets)}
    for m, name in enumerate(members):
        per_request[name] = request_ndcg(
            rows, -member_ranks[:, m].astype(np.float64), labels, targets
        )
    slices = history_slice_labels(history_lengths)
    board: dict[str, dict[str, float]] = {}
    gain_se: dict[str, dict[str, float]] = {}
    users = {}
    for name in HISTORY_SLICES:
        in_slice = (slices == name) & (targets > 0)
        users[name] = int(in_slice.sum())
        board[name] = {
            scorer: float(np.nanmean(values[in_slice])) if in_slice.any() else float("nan")
            for scorer, values in per_request.items()
        }
        gain_se[name] = {
            scorer: _standard_error(values[in_slice] - per_request[RANKER][in_slice])
            for scorer, values in per_request.items()
            if scorer != RANKER
        }
    return SliceBoard(board, users, gain_se)


def _standard_error(diff: F64) -> float:
    diff = diff[np.isfinite(diff)]
    return float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")


def direct_routes(board: SliceBoard, min_users: int, min_gain_se: float = 0.0) -> dict[str, str]:
    """Slice -> the member that serves it alone, where a member beat the ranker on validation
    over at least `min_users` requests by more than `min_gain_se` standard errors of the paired
    gain (1.96: its 95% interval above 0; a slice handed over on noise loses on test)."""
    out = {}
    for name, scores in board.ndcg.items():
        if board.users[name] < min_users:
            continue
        best = max((s for s in scores if s != RANKER), key=lambda s: scores[s])
        gain = scores[best] - scores[RANKER]
        se = board.gain_se.get(name, {}).get(best, 0.0)
        if gain > 0 and (min_gain_se == 0 or (np.isfinite(se) and gain > min_gain_se * se)):
            out[name] = best
    return out
