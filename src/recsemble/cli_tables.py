"""The rich tables the command line prints: metrics per model, paired comparisons."""

from __future__ import annotations

from typing import Any

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
)


def metrics_table(results: dict[str, Any], k: int) -> Table:
    table = Table(title=f"Offline evaluation at k={k} (macro-averaged over evaluated users)")
    table.add_column("model", style="bold")
    present = [m for m in METRIC_COLUMNS if any(f"{m}@{k}" in r for r in results.values())]
    for metric in present:
        table.add_column(f"{metric}@{k}", justify="right")
    for name, entry in results.items():
        table.add_row(name, *(_fmt(entry.get(f"{m}@{k}")) for m in present))
    return table


def _fmt(value: Any) -> str:
    if value is None or value != value:  # NaN
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def comparison_table(
    name: str, baseline: str, metric: str, by_slice: dict[str, dict[str, float]]
) -> Table:
    table = Table(title=f"{name} vs {baseline}: {metric} (paired per user)")
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
        table.add_column(column, justify="left" if column == "slice" else "right")
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
