"""Evaluation artifacts on disk: the split and lists (--dump), results.json, comparisons.

Everything written here uses EXTERNAL ids, so that any other tool can check it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.evaluation.runner import Evaluation
from recsemble.evaluation.significance import compare_per_slice
from recsemble.evaluation.slices import ALL


def _interactions_csv(dataset: Dataset, path: Path) -> None:
    ext = dataset.external_interactions().select(
        pl.col("user_id").alias("user"), pl.col("item_id").alias("item"), "timestamp"
    )
    ext.sort("user", "timestamp", "item").write_csv(path)


def write_dump(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """train.csv, test.csv (user,item,timestamp) and recs-<model>.csv (user,item,rank from 1);
    recs-*.csv files of models not in this run are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    split = evaluation.split
    written = [out_dir / "train.csv", out_dir / "test.csv"]
    _interactions_csv(split.train, written[0])
    _interactions_csv(split.test, written[1])
    user_ids = split.train.users.to_ids(evaluation.users)
    for name, run in evaluation.runs.items():
        items = run.topk.items
        rows, cols = np.nonzero(items >= 0)
        frame = pl.DataFrame(
            {
                "user": pl.Series(user_ids[rows], dtype=pl.String),
                "item": pl.Series(split.train.items.to_ids(items[rows, cols]), dtype=pl.String),
                "rank": cols + 1,
            }
        )
        path = out_dir / f"recs-{name}.csv"
        frame.write_csv(path)
        written.append(path)
    for stale in set(out_dir.glob("recs-*.csv")) - set(written):
        stale.unlink()  # an earlier run's lists, from another split, would read as this run's
    return written


def _clean(value: Any) -> Any:
    """NaN -> null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_results(results: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(results), indent=1, allow_nan=False))


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("results file does not exist", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", source=str(path), line=exc.lineno) from None
    except UnicodeDecodeError:
        raise DataError("not a results file (not UTF-8 text)", source=str(path)) from None
    except OSError as exc:  # e.g. a folder
        raise DataError(f"cannot read it ({exc.strerror or exc})", source=str(path)) from None
    if isinstance(data, dict) and {"prune_line", "leave_one_out_delta"} <= set(data):
        raise DataError(
            "this is `recsemble analyze --json` output; give the results.json written by "
            "`recsemble evaluate --json` (with evaluate.analyze = true it holds the analysis too)",
            source=str(path),
        )
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError("expected an object of model name -> results", source=str(path))
    if not data:
        raise DataError("holds no model results", source=str(path))
    return data


#: What two runs must share for their per-user values to be paired.
SPLIT_KEYS = ("dataset", "protocol", "test_fraction", "min_user_interactions", "min_value")


def merge_runs(paths: Sequence[Path]) -> dict[str, Any]:
    """The models of several results files as one, for a paired comparison across runs (a
    config before and after tuning, a code change). Their splits must be the same; a model in
    more than one file is named `<run>:<model>` unless every copy has the same per-user values
    (pop in each run), which are then kept once."""
    runs = {path: read_results(path) for path in paths}
    if len(runs) == 1:
        return next(iter(runs.values()))
    _check_same_split(runs)
    labels = _run_labels(list(runs))
    copies: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, results in runs.items():
        for name, entry in results.items():
            copies.setdefault(name, []).append((path, entry))
    merged: dict[str, Any] = {}
    for name, entries in copies.items():
        if all(entry.get("per_user") == entries[0][1].get("per_user") for _, entry in entries):
            merged[name] = entries[0][1]
            continue
        merged.update({f"{labels[path]}:{name}": entry for path, entry in entries})
    return merged


def _check_same_split(runs: Mapping[Path, Mapping[str, Any]]) -> None:
    first_path, first = next(iter(runs.items()))
    want = _split_meta(first)
    for path, results in runs.items():
        have = _split_meta(results)
        if "split_sha256" in want and "split_sha256" in have:  # the split itself, row by row
            if want["split_sha256"] != have["split_sha256"]:
                raise DataError(
                    f"its split is not the one of {first_path} (other train or test rows); "
                    "only runs on the same split can be compared per user",
                    source=str(path),
                )
            continue
        for key in SPLIT_KEYS:  # files written before evaluate recorded split_sha256
            if want.get(key) != have.get(key):
                raise DataError(
                    f"{key} is {have.get(key)!r} here but {want.get(key)!r} in {first_path}: "
                    "only runs on the same split can be compared per user",
                    source=str(path),
                )


def _split_meta(results: Mapping[str, Any]) -> dict[str, Any]:
    meta = next(iter(results.values())).get("meta")
    return dict(meta) if isinstance(meta, dict) else {}


def _run_labels(paths: list[Path]) -> dict[Path, str]:
    """Each file's name without .json; the path as given where two names are the same."""
    stems = [path.name.removesuffix(".json") for path in paths]
    unique = len(set(stems)) == len(stems)
    return {path: stem if unique else str(path) for path, stem in zip(paths, stems, strict=True)}


def compare_results(
    results: Mapping[str, Any],
    baseline: str,
    metrics: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """model -> metric -> slice -> paired comparison against `baseline`, per user."""
    if baseline not in results:
        raise DataError(f"baseline {baseline!r} is not in the results; models: {sorted(results)}")
    base = _per_user(results, baseline)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in results:
        if name == baseline:
            continue
        mine = _per_user(results, name)
        if mine["user_id"] != base["user_id"]:
            raise DataError(f"{name!r} and {baseline!r} were evaluated on different users")
        out[name] = {}
        for metric in metrics:
            if metric not in mine or metric not in base:
                available = sorted(k for k in mine if "@" in k)
                raise DataError(f"metric {metric!r} not in results; available: {available}")
            out[name][metric] = compare_per_slice(
                _floats(mine[metric]),
                _floats(base[metric]),
                base["slice"],
                n_resamples=n_resamples,
                seed=seed,
            )
    return out


def uncompared_slices(
    results: Mapping[str, Any], name: str, baseline: str, metric: str
) -> dict[str, int]:
    """Slices with users that compare_results leaves out ("all" included): fewer than 2 users
    with a value (not NaN) for both models; slice -> those users."""
    mine, base = _per_user(results, name), _per_user(results, baseline)
    usable = ~(np.isnan(_floats(mine[metric])) | np.isnan(_floats(base[metric])))
    labels = np.asarray(base["slice"]).astype(str)
    counts = {ALL: int(usable.sum())}
    counts.update({str(s): int(usable[labels == s].sum()) for s in dict.fromkeys(labels)})
    return {s: n for s, n in counts.items() if n < 2}


def _per_user(results: Mapping[str, Any], name: str) -> dict[str, Any]:
    per_user = results[name].get("per_user")
    if not isinstance(per_user, dict) or "user_id" not in per_user:
        raise DataError(f"model {name!r} has no per-user values (written by recsemble evaluate)")
    return per_user


def _floats(values: list[float | None]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
