"""The offline protocol: preparation, splits, metrics, slices, paired comparisons."""

from recsemble.evaluation.metrics import CatalogStats, MetricResult, compute_metrics
from recsemble.evaluation.protocol import Split, prepare, split, validation_split
from recsemble.evaluation.runner import Evaluation, evaluate
from recsemble.evaluation.significance import paired_comparison

__all__ = [
    "CatalogStats",
    "Evaluation",
    "MetricResult",
    "Split",
    "compute_metrics",
    "evaluate",
    "paired_comparison",
    "prepare",
    "split",
    "validation_split",
]
