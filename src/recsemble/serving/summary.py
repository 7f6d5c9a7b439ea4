"""A model version's evaluation summary: headline figures from `recsemble evaluate --json`.

`recsemble serve --model M --results results.json` stores, with the version it registers,
the results entry named like the model (its manifest says which: "ensemble", or the
generator's name): ndcg/recall/hit/coverage at the first cut-off, and the decision statement
when the evaluation made one. They go into the registry's `metrics` (JSON, kept in the
version's version.json): figures as numbers, and the two texts under EVALUATED_AS and
DECISION, so the whole evaluation summary stays in one place with the immutable version it
describes. Readers that want figures only take the numeric entries (`numeric_metrics`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsemble.errors import DataError

HEADLINE_METRICS = ("ndcg", "recall", "hit", "coverage")
EVALUATED_AS = "evaluated_as"  # the results entry the figures come from
DECISION = "decision"  # the evaluation's plain-language verdict, when there is one
ENSEMBLE_FORMAT = "recsemble.ensemble"


def model_name(model_dir: Path) -> str:
    """The name results.json gives a model like this one: "ensemble" or the generator's."""
    manifest = _json_object(model_dir / "manifest.json")
    if manifest.get("format") == ENSEMBLE_FORMAT:
        return "ensemble"
    generator = manifest.get("generator")
    if not isinstance(generator, str) or not generator:
        raise DataError("the manifest names no model", source=str(model_dir / "manifest.json"))
    return generator


def headline_figures(results_path: Path, model_dir: Path) -> dict[str, Any]:
    """The registry metrics for `model_dir` from its entry in `results_path` (see above)."""
    name = model_name(model_dir)
    results = _json_object(results_path)
    entry = results.get(name)
    if not isinstance(entry, dict):
        entries = ", ".join(sorted(results)) or "none"
        raise DataError(
            f"no entry {name!r} for this model (entries: {entries})", source=str(results_path)
        )
    k = _first_cutoff(entry)
    if k is None:
        raise DataError(f"entry {name!r} has no metric@k figures", source=str(results_path))
    figures: dict[str, Any] = {EVALUATED_AS: name}
    for metric in HEADLINE_METRICS:
        value = entry.get(f"{metric}@{k}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            figures[f"{metric}@{k}"] = float(value)
    decision = entry.get("decision")
    statement = decision.get("statement") if isinstance(decision, dict) else None
    if isinstance(statement, str) and statement:
        figures[DECISION] = statement
    return figures


def _first_cutoff(entry: Mapping[str, Any]) -> int | None:
    """meta.k's first cut-off, else the smallest k any "<metric>@<k>" key has."""
    meta = entry.get("meta")
    ks = meta.get("k") if isinstance(meta, dict) else None
    if isinstance(ks, list) and ks and isinstance(ks[0], int):
        return ks[0]
    found = [int(key.rsplit("@", 1)[1]) for key in entry if key.rsplit("@", 1)[-1].isdigit()]
    return min(found) if found else None


def _json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not readable JSON ({exc})", source=str(path)) from None
    if not isinstance(value, dict):
        raise DataError("not a JSON object", source=str(path))
    return value


def numeric_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite numbers among a version's metrics (its texts left out)."""
    out = {}
    for key, value in (metrics or {}).items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value):
            out[key] = float(value)
    return out


def text_metric(metrics: Mapping[str, Any] | None, key: str) -> str | None:
    value = (metrics or {}).get(key)
    return value if isinstance(value, str) else None
