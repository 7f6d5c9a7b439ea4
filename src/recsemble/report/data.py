"""What the report reads from results.json: models and their roles, numbers, confidence intervals.

results.json may come from an older recsemble (no roles, no comparisons, no analysis) or hold
nulls where a metric is undefined, so every accessor here returns None rather than failing, and
roles fall back to what the model names say ("pop" is the baseline, "a+b" is a variant of "a").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsemble.errors import DataError
from recsemble.evaluation.significance import bootstrap_means

#: Columns of the metrics table and the options of the bar chart, in this order.
TABLE_METRICS = (
    "ndcg",
    "recall",
    "precision",
    "map",
    "mrr",
    "hit",
    "coverage",
    "novelty",
    "ild",
    "longtail_hit_share",
    "gini",
    "calibration_kl",
)
#: Metrics compared with the baseline per user (results.json "vs_baseline").
COMPARED_METRICS = ("ndcg", "recall", "hit")
#: Metrics where less is better; every other metric reads "higher is better".
LOWER_IS_BETTER = frozenset({"gini", "calibration_kl", "arp"})
DEFAULT_BASELINE = "pop"
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# "<stage>[<key>=<value>]" inside a variant name, as evaluation/sweep.py labels sweep points.
_SWEEP_LABEL = re.compile(r"^(?P<stage>[^\[\]]+)\[(?P<key>[^=\]]+)=(?P<value>[^\]]+)\]$")


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one (absent or malformed sections)."""
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class SweepPoint:
    """One value of a swept re-ranking knob."""

    stage: str
    key: str
    value: float


@dataclass(frozen=True)
class ModelInfo:
    name: str
    role: str  # "baseline", "model" or "variant"
    entry: Mapping[str, Any]
    variant_of: str | None = None
    sweep: SweepPoint | None = None

    def value(self, metric: str, k: int) -> float | None:
        return number(self.entry.get(f"{metric}@{k}"))

    def comparison(self, metric: str, k: int, slice_name: str = "all") -> Mapping[str, Any]:
        """This model vs the baseline on `metric`@k for one slice (empty when not computed)."""
        per_metric = mapping(mapping(self.entry.get("vs_baseline")).get(f"{metric}@{k}"))
        return mapping(per_metric.get(slice_name))


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass
class ReportData:
    """results.json, read once: the models in file order and the shared settings."""

    results: Mapping[str, Any]
    models: list[ModelInfo]
    baseline: str | None
    ks: list[int]
    meta: Mapping[str, Any]
    _intervals: dict[tuple[str, str], Interval | None] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """The cut-off every chart uses: the first one evaluated."""
        return self.ks[0]

    @property
    def plain(self) -> list[ModelInfo]:
        """The baseline and the models, without re-ranked variants."""
        return [m for m in self.models if m.role != "variant"]

    @property
    def variants(self) -> list[ModelInfo]:
        return [m for m in self.models if m.role == "variant"]

    def model(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == name), None)

    def metrics(self, candidates: Sequence[str] = TABLE_METRICS) -> list[str]:
        """The metrics of `candidates` that at least one model has a value for at k."""
        return [c for c in candidates if any(m.value(c, self.k) is not None for m in self.models)]

    def interval(self, model: ModelInfo, metric: str) -> Interval | None:
        """95% bootstrap CI of the mean of `metric`@k over users (None: no per-user values)."""
        key = (model.name, metric)
        if key not in self._intervals:
            resamples, seed = bootstrap_settings(model.entry)
            self._intervals[key] = _bootstrap_interval(
                model.entry, f"{metric}@{self.k}", resamples, seed
            )
        return self._intervals[key]

    def section(self, name: str) -> tuple[ModelInfo, Mapping[str, Any]] | None:
        """An ensemble-only section ("analysis", "calibration"): the "ensemble" entry's, else
        the first model's that has one."""
        ordered = sorted(self.models, key=lambda m: m.name != "ensemble")
        for model in ordered:
            value = model.entry.get(name)
            if isinstance(value, Mapping) and value:
                return model, value
        return None

    def decision(self) -> tuple[ModelInfo, Mapping[str, Any]] | None:
        """The ensemble's decision, else that of the best model (by NDCG@k) which has one."""
        found = [(m, mapping(m.entry.get("decision"))) for m in self.plain if m.role == "model"]
        found = [(m, d) for m, d in found if d]
        if not found:
            return None
        ensemble = [pair for pair in found if pair[0].name == "ensemble"]
        if ensemble:
            return ensemble[0]
        return max(found, key=lambda pair: pair[0].value("ndcg", self.k) or -math.inf)


def bootstrap_settings(entry: Mapping[str, Any]) -> tuple[int, int]:
    """The run's protocol.bootstrap_resamples and protocol.seed (the Δ columns' intervals came
    from them); 1000 and 0 for results written before meta recorded them."""
    meta = mapping(entry.get("meta"))
    resamples, seed = meta.get("bootstrap_resamples"), meta.get("seed")
    if isinstance(resamples, int) and resamples > 0 and isinstance(seed, int):
        return resamples, seed
    return BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED


def _bootstrap_interval(
    entry: Mapping[str, Any], column: str, resamples: int, seed: int
) -> Interval | None:
    values = mapping(entry.get("per_user")).get(column)
    if not isinstance(values, list):
        return None
    try:
        array = np.array(values, dtype=np.float64)  # null -> NaN
    except (TypeError, ValueError):
        return None  # not a list of numbers: no interval rather than no report
    array = array[np.isfinite(array)]
    if array.shape[0] < 2:
        return None
    means = bootstrap_means(array, resamples, seed)
    tail = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(array.mean()), float(low), float(high))


def read_report_data(results: Mapping[str, Any]) -> ReportData:
    """Interpret results.json; DataError when it holds no model entries at all."""
    entries = {name: entry for name, entry in results.items() if isinstance(entry, Mapping)}
    if not entries:
        raise DataError("results.json holds no model entries (written by recsemble evaluate)")
    metas = {name: mapping(entry.get("meta")) for name, entry in entries.items()}
    baseline = _baseline(entries, metas)
    models = [_model_info(name, entries[name], metas[name], baseline) for name in entries]
    first = metas.get(baseline or "", {}) or next(iter(metas.values()))
    ks = [k for k in first.get("k", []) if isinstance(k, int) and k > 0] or _ks_from_keys(entries)
    if not ks:
        raise DataError("results.json has no metric@k values (written by recsemble evaluate)")
    return ReportData(results, models, baseline, ks, first)


def _baseline(entries: Mapping[str, Any], metas: Mapping[str, Mapping[str, Any]]) -> str | None:
    for name, meta in metas.items():
        if meta.get("role") == "baseline":
            return name
    named = next((m["baseline"] for m in metas.values() if isinstance(m.get("baseline"), str)), "")
    if named in entries:
        return str(named)
    return DEFAULT_BASELINE if DEFAULT_BASELINE in entries else None


def _model_info(
    name: str, entry: Mapping[str, Any], meta: Mapping[str, Any], baseline: str | None
) -> ModelInfo:
    role = meta.get("role")
    if role not in ("baseline", "model", "variant"):
        role = "baseline" if name == baseline else "variant" if "+" in name else "model"
    if role != "variant":
        return ModelInfo(name, str(role), entry)
    variant_of = meta.get("variant_of")
    if not isinstance(variant_of, str):
        variant_of = name.split("+", 1)[0]
    return ModelInfo(name, "variant", entry, variant_of, _sweep_point(name, meta))


def _sweep_point(name: str, meta: Mapping[str, Any]) -> SweepPoint | None:
    sweep = mapping(meta.get("sweep"))
    value = number(sweep.get("value"))
    if (
        isinstance(sweep.get("stage"), str)
        and isinstance(sweep.get("key"), str)
        and value is not None
    ):
        return SweepPoint(sweep["stage"], sweep["key"], value)
    for part in name.split("+")[1:]:  # older files: read the knob from the variant's label
        match = _SWEEP_LABEL.match(part)
        if match:
            try:
                return SweepPoint(match["stage"], match["key"], float(match["value"]))
            except ValueError:
                return None
    return None


def _ks_from_keys(entries: Mapping[str, Mapping[str, Any]]) -> list[int]:
    found = {key.rsplit("@", 1)[1] for entry in entries.values() for key in entry if "@" in key}
    return sorted(int(k) for k in found if k.isdigit() and int(k) > 0)
