"""Re-ranking variants for `evaluate`: `--rerank` chains and `--sweep` knob curves.

A sweep such as "rerank.mmr.lambda=0:1:0.1" evaluates the model once per knob value with that
stage applied, all on one fit of the model (the stages are cheap, the model is not), so the
curve of NDCG@k against ILD, coverage, novelty and calibration KL shows what each value costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.errors import ConfigError
from recsemble.rerank.config import RERANKERS, RerankConfig, build_stages, check_stage_names
from recsemble.rerank.reranked import PoolCache, Reranked

#: The beyond-accuracy metrics a sweep plots NDCG against.
TRADE_OFF_METRICS = ("ild", "coverage", "novelty", "calibration_kl", "gini")
_MAX_VALUES = 101


@dataclass(frozen=True)
class Sweep:
    """One knob of one stage and the values it takes."""

    stage: str
    key: str
    values: tuple[float, ...]

    def label(self, value: float) -> str:
        return f"{self.stage}[{self.key}={value:g}]"


def _values(text: str) -> tuple[float, ...]:
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if not (np.isfinite([start, stop, step]).all() and step > 0 and stop >= start):
                raise ValueError
            count = int(np.floor((stop - start) / step + 1e-9)) + 1
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
            if not np.isfinite(values).all():
                raise ValueError
            count = len(values)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"sweep values {text!r} must be start:stop:step (finite, step > 0) or a,b,c"
        ) from None
    _check_count(text, count)  # before any list: 0:1:1e-9 would be a billion values
    if ":" in text:
        values = [round(start + i * step, 10) for i in range(count)]
    return tuple(values)


def _check_count(text: str, count: int) -> None:
    if not 1 <= count <= _MAX_VALUES:
        raise ConfigError(f"sweep {text!r} gives {count} values; 1..{_MAX_VALUES} allowed")


def parse_sweep(text: str, config: RerankConfig) -> Sweep:
    """'rerank.mmr.lambda=0:1:0.1' -> Sweep('mmr', 'lambda', (0.0, 0.1, ..., 1.0)), checked."""
    if "=" not in text:
        raise ConfigError(f"sweep {text!r} must look like rerank.<stage>.<key>=start:stop:step")
    key, raw = (part.strip() for part in text.split("=", 1))
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "rerank":
        raise ConfigError(f"sweep key {key!r} must be rerank.<stage>.<key>")
    stage = check_stage_names([parts[1]])[0]
    real = config.stage_name(stage)
    fields = {f.alias or n for n, f in RERANKERS[real].Config.model_fields.items()}
    if parts[2] not in fields:
        raise ConfigError(
            f"sweep key {parts[2]!r} is not a setting of {real}; it has {', '.join(sorted(fields))}"
        )
    sweep = Sweep(stage, parts[2], _values(raw))
    for value in sweep.values:  # every value must be valid before hours of evaluation
        try:
            config.with_value(stage, sweep.key, value)
        except ValueError as exc:
            raise ConfigError(f"sweep {text!r}: value {value:g} is invalid: {exc}") from None
    return sweep


@dataclass(frozen=True)
class Variant:
    """A re-ranked variant of a model: its name in results, stages, settings and sweep point."""

    name: str
    base: str
    chain: tuple[str, ...]
    config: RerankConfig
    sweep: dict[str, Any] | None = None

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variant_of": self.base, "stages": list(self.chain)}
        if self.sweep is not None:
            out["sweep"] = self.sweep
        return out


def variants(
    names: Sequence[str], rerank: Sequence[str], sweeps: Sequence[Sweep], config: RerankConfig
) -> list[Variant]:
    """'<model>+<stages>' and '<model>+<stage>[<key>=<value>]' for each model in `names`."""
    out = []
    for name in names:
        if rerank:
            out.append(Variant(f"{name}+{'+'.join(rerank)}", name, tuple(rerank), config))
        for sweep in sweeps:
            chain = list(rerank) if sweep.stage in rerank else [sweep.stage]
            for value in sweep.values:
                label = "+".join(sweep.label(value) if s == sweep.stage else s for s in chain)
                point = {"stage": sweep.stage, "key": sweep.key, "value": value}
                varied = config.with_value(sweep.stage, sweep.key, value)
                out.append(Variant(f"{name}+{label}", name, tuple(chain), varied, point))
    return out


def reranked_variants(models: Mapping[str, Any], specs: Sequence[Variant]) -> dict[str, Reranked]:
    """The variants as models; they share the plain model's fit (evaluated first, under its
    own name) and one candidate pool per user."""
    pooled = {base: PoolCache(models[base]) for base in dict.fromkeys(v.base for v in specs)}
    out = {}
    for v in specs:
        stages = build_stages(v.config, list(v.chain))
        out[v.name] = Reranked(pooled[v.base], stages, v.config.pool, False)
    return out


def sweep_rows(
    results: Mapping[str, Any], model: str, sweep: Sweep, rerank: Sequence[str], k: int
) -> list[dict[str, float]]:
    """One row per knob value: the value and the metrics at k (NaN when absent)."""
    chain = list(rerank) if sweep.stage in rerank else [sweep.stage]
    rows = []
    for value in sweep.values:
        label = "+".join(sweep.label(value) if s == sweep.stage else s for s in chain)
        entry = results[f"{model}+{label}"]
        row = {"value": value, "ndcg": entry.get(f"ndcg@{k}", np.nan)}
        row.update({m: entry.get(f"{m}@{k}", np.nan) for m in TRADE_OFF_METRICS})
        rows.append(row)
    return rows


def plot_sweeps(
    curves: Mapping[str, list[dict[str, float]]],
    plain: Mapping[str, Mapping[str, float]],
    k: int,
    path: Path,
) -> Path:
    """NDCG@k against each trade-off metric, one line per swept knob, the plain model as a star.

    curves: '<model> <stage>.<key>' -> sweep rows; plain: model -> its metrics at k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(13, 8))
    axes = list(grid.ravel())
    for axis, metric in zip(axes, TRADE_OFF_METRICS, strict=False):
        for label, rows in curves.items():
            xs, ys = [r[metric] for r in rows], [r["ndcg"] for r in rows]
            axis.plot(xs, ys, marker="o", markersize=3, label=label)
            for row in (rows[0], rows[-1]):
                axis.annotate(f"{row['value']:g}", (row[metric], row["ndcg"]), fontsize=7)
        for model, entry in plain.items():
            axis.plot(entry.get(metric, np.nan), entry["ndcg"], "k*", markersize=10, label=model)
        axis.set_xlabel(f"{metric}@{k}")
        axis.set_ylabel(f"ndcg@{k}")
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_axis = axes[len(TRADE_OFF_METRICS)]  # the spare cell of the grid holds the legend
    legend_axis.axis("off")
    legend_axis.legend(handles, labels, loc="center", fontsize=9)
    fig.suptitle(f"Re-ranking trade-offs at k={k} (numbers: knob values at the curve ends)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
