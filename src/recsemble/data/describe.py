"""Summary statistics of a Dataset, as a JSON-ready dict and as a plain-text table."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from recsemble.data.dataset import Dataset

#: Users by history length (distinct items), the slices of the evaluation protocol.
HISTORY_BINS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 0),
    ("1-4", 1, 4),
    ("5-19", 5, 19),
    ("20-99", 20, 99),
    ("100+", 100, math.inf),
)
TOP_ITEM_SHARE = 0.2  # "head" = this share of the catalog, by interaction count


def describe(dataset: Dataset) -> dict[str, Any]:
    """Counts, density, time range and distributions of a dataset (plain Python values only).

    Per-user and per-item distributions count interaction rows over every user / item of the
    dataset, those without interactions included; history length counts distinct items.
    """
    n_users, n_items, n = dataset.n_users, dataset.n_items, dataset.n_interactions
    per_user = np.bincount(dataset.column("user_idx"), minlength=n_users)
    per_item = np.bincount(dataset.column("item_idx"), minlength=n_items)
    pairs = int(dataset.user_history_lengths.sum())
    cells = n_users * n_items
    density = pairs / cells if cells else 0.0
    events = dataset.interactions["event"].value_counts(sort=True)
    head = np.sort(per_item)[::-1][: math.ceil(TOP_ITEM_SHARE * n_items)]
    return {
        "name": dataset.name,
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "active_users": int((per_user > 0).sum()),
        "active_items": int((per_item > 0).sum()),
        "distinct_pairs": pairs,
        "density": density,
        "sparsity": 1.0 - density,
        "events": {str(e): int(c) for e, c in events.iter_rows()},
        "time_range": _time_range(dataset.column("timestamp")),
        "interactions_per_user": _distribution(per_user),
        "interactions_per_item": _distribution(per_item),
        "history_length": _history_bins(dataset.user_history_lengths),
        "top_20pct_items_share": float(head.sum() / n) if n else 0.0,
    }


def _time_range(ts: npt.NDArray[np.int64]) -> dict[str, Any] | None:
    if ts.size == 0:
        return None
    lo, hi = int(ts.min()), int(ts.max())
    return {"start": _iso_date(lo), "end": _iso_date(hi), "days": (hi - lo) / 86_400}


def _iso_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).date().isoformat()


def _distribution(counts: npt.NDArray[np.int64]) -> dict[str, float]:
    if counts.size == 0:
        return dict.fromkeys(("min", "median", "mean", "p90", "max"), 0.0)
    return {
        "min": float(counts.min()),
        "median": float(np.median(counts)),
        "mean": float(counts.mean()),
        "p90": float(np.percentile(counts, 90)),
        "max": float(counts.max()),
    }


def _history_bins(lengths: npt.NDArray[np.int64]) -> dict[str, int]:
    return {label: int(((lengths >= lo) & (lengths <= hi)).sum()) for label, lo, hi in HISTORY_BINS}


def format_description(d: dict[str, Any]) -> str:
    """The dict of `describe` as an aligned plain-text report."""
    lines = [f"Dataset {d['name'] or '(unnamed)'}"]
    density = f"{d['density']:.4%} (sparsity {d['sparsity']:.4%})"
    rows: list[tuple[str, str]] = [
        ("users", f"{d['users']:,} ({d['active_users']:,} with interactions)"),
        ("items", f"{d['items']:,} ({d['active_items']:,} with interactions)"),
        ("interactions", f"{d['interactions']:,} ({d['distinct_pairs']:,} distinct user-item)"),
        ("density", density),
    ]
    if d["time_range"] is not None:
        tr = d["time_range"]
        rows.append(("time range", f"{tr['start']} .. {tr['end']} ({tr['days']:.1f} days)"))
    rows.append(("top 20% items", f"{d['top_20pct_items_share']:.1%} of interactions"))
    lines += [f"  {k:<14}{v}" for k, v in rows]
    total = max(d["interactions"], 1)
    lines.append("Events")
    lines += [f"  {e:<14}{c:>12,}  {c / total:6.1%}" for e, c in d["events"].items()]
    lines.append(f"{'Distribution':<16}" + "".join(f"{h:>10}" for h in _STATS))
    for label, key in (
        ("per user", "interactions_per_user"),
        ("per item", "interactions_per_item"),
    ):
        lines.append(f"  {label:<14}" + "".join(_num(d[key][s]) for s in _STATS))
    lines.append("History length (distinct items per user)")
    users = max(d["users"], 1)
    lines += [f"  {b:<14}{c:>12,}  {c / users:6.1%}" for b, c in d["history_length"].items()]
    return "\n".join(lines)


_STATS = ("min", "median", "mean", "p90", "max")


def _num(x: float) -> str:
    return f"{x:>10,.0f}" if float(x).is_integer() else f"{x:>10,.1f}"
