"""The rich tables the command line prints: metrics per model, paired comparisons."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

METRIC_COLUMNS = (
    "ndcg",
    "recall",
    "precision",
    "map",
    "mrr",
    "hit",
    "coverage",
    "novelty",
    "arp",
    "ild",
    "gini",
    "calibration_kl",
)
#: Shorter headers where the metric's name would widen the table.
_HEADERS = {"calibration_kl": "cal_kl"}


def metrics_table(results: dict[str, Any], k: int) -> Table:
    table = Table(title=f"Offline evaluation at k={k} (macro-averaged over evaluated users)")
    table.add_column("model", style="bold", overflow="fold")
    present = [m for m in METRIC_COLUMNS if any(f"{m}@{k}" in r for r in results.values())]
    for metric in present:
        table.add_column(f"{_HEADERS.get(metric, metric)}@{k}", justify="right")
    for name, entry in results.items():
        table.add_row(escape(name), *(_fmt(entry.get(f"{m}@{k}")) for m in present))
    return table


def _fmt(value: Any) -> str:
    if value is None or value != value:  # NaN
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def comparison_table(
    name: str,
    baseline: str,
    metric: str,
    by_slice: dict[str, dict[str, float]],
    uncompared: dict[str, int] | None = None,
) -> Table:
    """One row per compared slice; `uncompared` (slice -> users) is named under the table."""
    table = Table(title=escape(f"{name} vs {baseline}: {metric} (paired per user)"))
    if uncompared:
        named = ", ".join(f"{s} ({n} user{'' if n == 1 else 's'})" for s, n in uncompared.items())
        table.caption = escape(f"not compared, fewer than 2 users with values: {named}")
    for column in (
        "slice",
        "users",
        name,
        baseline,
        "diff",
        "95% CI",
        "p (t-test)",
        "p (Wilcoxon)",
    ):
        table.add_column(escape(column), justify="left" if column == "slice" else "right")
    for slice_name, row in by_slice.items():
        style = "green" if row["ci_low"] > 0 else "red" if row["ci_high"] < 0 else None
        table.add_row(
            slice_name,
            str(row["n_users"]),
            f"{row['mean_a']:.4f}",
            f"{row['mean_b']:.4f}",
            f"{row['mean_diff']:+.4f}",
            f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]",
            f"{row['p_ttest']:.2g}",
            f"{row['p_wilcoxon']:.2g}",
            style=style,
        )
    return table


def sweep_table(
    model: str,
    stage: str,
    key: str,
    rows: list[dict[str, float]],
    plain: dict[str, Any],
    k: int,
) -> Table:
    """One row per knob value: NDCG and the trade-off metrics, with changes vs the plain model."""
    title = f"{model} + {stage}: sweep of {key} at k={k} (change vs plain {model})"
    table = Table(title=escape(title))
    table.add_column(key, justify="right")
    metrics = ["ndcg", "ild", "coverage", "novelty", "calibration_kl", "gini"]
    for metric in metrics:
        table.add_column(f"{_HEADERS.get(metric, metric)}@{k}", justify="right")
    for row in rows:
        cells = [f"{row['value']:g}"]
        for metric in metrics:
            base = plain.get(f"{metric}@{k}")
            cells.append(f"{_fmt(row[metric])} ({_relative(row[metric], base)})")
        table.add_row(*cells)
    return table


def _relative(value: float, base: Any) -> str:
    if base is None or base != base or value != value or base == 0:
        return "-"
    return f"{(value - base) / abs(base):+.1%}"
