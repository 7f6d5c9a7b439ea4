"""Scoring and tables for bench_generators.py (runs in recsemble's .venv).

Every list, recsemble's or a peer's, is read back from the same CSV format (user,item,rank with
external ids) and scored by recsemble's own metric code, so all rows share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.evaluation.metrics import compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import catalog_stats, truth_matrix
from recsemble.evaluation.significance import paired_comparison
from recsemble.types import PAD_IDX

#: Above this (fit + recommend-all) time ratio to the peer, a member falls short on time.
TIME_RATIO_LIMIT = 1.2
#: A member falls short on quality when its NDCG is below the peer's by more than this share of
#: it AND the 95% bootstrap interval of the per-user difference (paired, as the protocol compares
#: two systems) lies below zero. Smaller gaps are tie-breaking noise (two exact popularity
#: rankings differ by 0.0002); larger ones whose interval spans zero are flagged, not failed.
NDCG_TOLERANCE = 0.01


@dataclass
class Row:
    """One model run: who ran it, its figures, or why it could not run."""

    model: str  # the recsemble model it is (or is the peer of); peers-only models keep their name
    library: str
    config: str  # "default" / "tuned" for recsemble; the parameters for peers
    # A peer run with a tuned config's settings ("-matched"): it stands beside the tuned row only.
    beside_tuned: bool = False
    fit_s: float | None = None
    recommend_s: float | None = None
    peak_mb: float | None = None
    base_mb: float | None = None  # recsemble: max RSS after imports + data, before fit
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    lists: npt.NDArray[np.int32] | None = None  # (evaluated users, k) item idx; not in JSON
    user_ndcg: npt.NDArray[np.float64] | None = None  # per evaluated user; not in JSON
    repeats: list[tuple[float, float]] = field(default_factory=list)  # (fit s, recommend s)

    def take_median_repeat(self) -> None:
        """fit_s / recommend_s from the repeat with the median fit + recommend time."""
        if not self.repeats:
            return
        ordered = sorted(self.repeats, key=sum)
        self.fit_s, self.recommend_s = ordered[(len(ordered) - 1) // 2]

    @property
    def total_s(self) -> float | None:
        if self.fit_s is None or self.recommend_s is None:
            return None
        return self.fit_s + self.recommend_s

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in {"lists", "user_ndcg"}}
        out["total_s"] = self.total_s
        return out


def read_lists(path: Path, split: Split, k: int) -> tuple[npt.NDArray[np.int32], list[str]]:
    """(evaluated users, k) item idx, PAD-padded, from a user,item,rank CSV; plus warnings."""
    users = split.evaluated_users
    frame = pl.read_csv(path, schema_overrides={"user": pl.String, "item": pl.String})
    frame = frame.filter(pl.col("rank").is_between(1, k))
    user_idx = split.train.users.to_idx(frame["user"], missing="ignore")
    item_idx = split.train.items.to_idx(frame["item"], missing="ignore")
    row = np.searchsorted(users, user_idx)
    row = np.minimum(row, users.size - 1)
    known = (user_idx >= 0) & (item_idx >= 0) & (users[row] == user_idx)
    warnings = []
    if not known.all():
        warnings.append(f"{int((~known).sum())} rows with unknown users/items dropped")
    row, item_idx, rank = row[known], item_idx[known], frame["rank"].to_numpy()[known]
    lists = np.full((users.size, k), PAD_IDX, dtype=np.int32)
    lists[row, rank - 1] = item_idx
    lists = _compact(lists)
    n_seen = _count_seen(lists, split)
    if n_seen:
        warnings.append(f"{n_seen} recommended items were already in the user's train history")
    short = int((lists[:, -1] == PAD_IDX).sum())
    if short:
        warnings.append(f"{short} users got fewer than {k} items")
    return lists, warnings


def _count_seen(lists: npt.NDArray[np.int32], split: Split) -> int:
    """How many listed items the user already had in train (a peer that failed to exclude)."""
    seen = split.train.user_item_matrix("binary")[split.evaluated_users].tocoo()
    n_items = np.int64(split.train.n_items)
    train_keys = seen.row.astype(np.int64) * n_items + seen.col
    rows = np.broadcast_to(np.arange(lists.shape[0])[:, None], lists.shape)
    valid = lists != PAD_IDX
    keys = rows[valid].astype(np.int64) * n_items + lists[valid]
    return int(np.isin(keys, train_keys).sum())


def _compact(lists: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Move padding to the end of each row (the metric code wants no gaps)."""
    order = np.argsort(lists == PAD_IDX, axis=1, kind="stable")
    out: npt.NDArray[np.int32] = np.take_along_axis(lists, order, axis=1)
    return out


def score(
    lists: npt.NDArray[np.int32], split: Split, k: int
) -> tuple[dict[str, float], npt.NDArray[np.float64]]:
    """Summary metrics and the per-user NDCG@k (for paired comparisons)."""
    result = compute_metrics(
        lists, truth_matrix(split, split.evaluated_users), k, catalog_stats(split)
    )
    summary = result.summary()
    metrics = {name: summary[f"{name}@{k}"] for name in ("ndcg", "recall", "hit", "coverage")}
    return metrics, result.per_user()["ndcg"]


def jaccard_matrix(lists: Sequence[npt.NDArray[np.int32]]) -> npt.NDArray[np.float64]:
    """Mean over users of |A and B| / |A or B| (Jaccard) for each pair of top-k lists."""
    n = len(lists)
    out = np.eye(n)
    for a in range(n):
        for b in range(a + 1, n):
            out[a, b] = out[b, a] = _mean_jaccard(lists[a], lists[b])
    return out


def _mean_jaccard(a: npt.NDArray[np.int32], b: npt.NDArray[np.int32]) -> float:
    both = np.sort(np.hstack([a, b]), axis=1)
    # Items are distinct within a list, so an equal neighbour pair is one shared item.
    inter = ((both[:, 1:] == both[:, :-1]) & (both[:, 1:] != PAD_IDX)).sum(axis=1)
    union = (a != PAD_IDX).sum(axis=1) + (b != PAD_IDX).sum(axis=1) - inter
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 0.0)))


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(rows: Sequence[Row], k: int) -> list[str]:
    head = (
        f"| model | library | config | NDCG@{k} | Recall@{k} | HR@{k} | fit s "
        "| recommend-all s | peak MB |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.error is not None:
            lines.append(f"| {r.model} | {r.library} | {r.config} | unavailable: {r.error} |||||")
            continue
        m = r.metrics
        lines.append(
            f"| {r.model} | {r.library} | {r.config} | {m['ndcg']:.4f} | {m['recall']:.4f} "
            f"| {m['hit']:.4f} | {_f(r.fit_s, 2)} | {_f(r.recommend_s, 2)} | {_f(r.peak_mb, 0)} |"
        )
    return lines


def comparisons(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Each recsemble member row against each peer row of the same model."""
    ours = [r for r in rows if r.library == "recsemble" and r.error is None]
    peers = [r for r in rows if r.library != "recsemble" and r.error is None]
    out = []
    for mine in ours:
        for peer in (p for p in peers if p.model == mine.model):
            if peer.beside_tuned and mine.config != "tuned":
                continue
            assert mine.total_s is not None and peer.total_s is not None
            ratio = mine.total_s / max(peer.total_s, 1e-9)
            delta = mine.metrics["ndcg"] - peer.metrics["ndcg"]
            assert mine.user_ndcg is not None and peer.user_ndcg is not None
            paired = paired_comparison(mine.user_ndcg, peer.user_ndcg)
            beyond_tolerance = delta < -NDCG_TOLERANCE * peer.metrics["ndcg"]
            out.append(
                {
                    "model": mine.model,
                    "config": mine.config,
                    "peer": peer.library,
                    "peer_config": peer.config,
                    "recsemble_s": mine.total_s,
                    "peer_s": peer.total_s,
                    "time_ratio": ratio,
                    "ndcg_delta": delta,
                    "ndcg_ci": [paired["ci_low"], paired["ci_high"]],
                    "ndcg_p": paired["p_ttest"],
                    "slower": ratio > TIME_RATIO_LIMIT,
                    "worse": beyond_tolerance and paired["ci_high"] < 0.0,
                    "noise": beyond_tolerance and paired["ci_high"] >= 0.0,
                }
            )
    return out


def comparison_table(items: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| member | config | peer | recsemble fit+rec s | peer fit+rec s | time ratio "
        "| NDCG@10 - peer's [95% CI], p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in items:
        verdict = []
        if c["slower"]:
            verdict.append(f"SLOWER (> {TIME_RATIO_LIMIT}x)")
        if c["worse"]:
            verdict.append(f"LOWER NDCG (> {NDCG_TOLERANCE:.0%} below, CI below 0)")
        elif c["noise"]:
            verdict.append(f"> {NDCG_TOLERANCE:.0%} below, CI spans 0")
        low, high = c["ndcg_ci"]
        lines.append(
            f"| {c['model']} | {c['config']} | {c['peer']} ({c['peer_config']}) "
            f"| {c['recsemble_s']:.2f} | {c['peer_s']:.2f} | {c['time_ratio']:.2f}x "
            f"| {c['ndcg_delta']:+.4f} [{low:+.4f}, {high:+.4f}], {c['ndcg_p']:.2f} "
            f"| {', '.join(verdict) or 'ok'} |"
        )
    return lines


def jaccard_table(names: Sequence[str], matrix: npt.NDArray[np.float64]) -> list[str]:
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, values in zip(names, matrix, strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return lines
