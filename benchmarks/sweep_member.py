"""Grid search of one member's settings on the VALIDATION window, then its test figure.

Each grid point is fitted on the validation split's train part and measured on its test part
(evaluation/tuning.ValidationObjective, the same as `recsemble tune`); the outer test part is
touched once, by the point with the best validation figure, fitted on the outer train part, next
to the reference members given by --references. Grid points run in parallel worker processes
(useful on a many-core or GPU machine; `recsemble tune` is the sequential, Optuna-driven tool).

    python benchmarks/sweep_member.py --dataset ml-100k --model sasrec \
        --grid horizon=1,4,8 --grid dropout=0.2,0.5 [--set device=cuda] [--workers 4]
        [--references ease-recent] [--data-dir ../shared/datasets] [--json out/sweep.json]
        [--no-config-file] [--test-all]

--test-all also measures every point on the test part, for diagnosis (e.g. how far validation and
test disagree); the choice of the best point still reads only the validation figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.config import resolve
from recsemble.evaluation.protocol import validation_split
from recsemble.evaluation.runner import evaluate
from recsemble.evaluation.tuning import ValidationObjective
from recsemble.evaluation.workflow import build_model, load_and_split
from recsemble.generators import GENERATORS

ROOT = Path(__file__).resolve().parents[1]


def _value(text: str) -> Any:
    """'0.5' -> 0.5, '8' -> 8, 'true' -> True, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _pairs(items: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid/--set {item!r} must look like key=v1,v2")
        grid[key.strip()] = [_value(v) for v in values.split(",")]
    return grid


def _config(dataset: str, data_dir: str, use_file: bool = True) -> Any:
    """configs/<dataset>.toml (tuned members) unless use_file is False: the defaults."""
    path = ROOT / "configs" / f"{dataset}.toml"
    sets: dict[str, Any] = {
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "protocol.name": "temporal-user",
        # No ensemble here: one light member instead of the default ones, whose libraries
        # (implicit, LightGBM) need not be installed on the machine that runs the sweep.
        "ensemble.members": [{"model": "pop"}],
    }
    return resolve(path if use_file and path.is_file() else None, sets).config


def _settings(config: Any, model: str, point: dict[str, Any]) -> dict[str, Any]:
    base = config.model_config_for(model).model_dump(exclude_unset=True)
    return {**base, **point}


def _measure(args: tuple[str, str, str, dict[str, Any], int, bool]) -> dict[str, Any]:
    """One grid point on the validation window (runs in a worker process); with test_too, its
    outer test figure as well (for diagnosis: the choice still reads only the validation)."""
    dataset, data_dir, model, settings, threads, test_too = args
    import torch

    torch.set_num_threads(threads)
    config = _config(dataset, data_dir, use_file=False)  # only the split: no member settings
    _, outer = load_and_split(config)
    objective = ValidationObjective(validation_split(outer), "ndcg@10")
    start = time.perf_counter()
    value = objective.measure(GENERATORS[model](**settings))
    seconds = time.perf_counter() - start
    row = {"settings": settings, "validation_ndcg@10": value, "seconds": seconds}
    if test_too:
        ev = evaluate(outer, {model: GENERATORS[model](**settings)}, (10,))
        row["test_ndcg@10"] = float(np.nanmean(ev.runs[model].metrics[10].per_user()["ndcg"]))
    return row


def _test_figures(
    args: argparse.Namespace, best: dict[str, Any], references: list[str]
) -> dict[str, float]:
    dataset, data_dir, model = args.dataset, args.data_dir, args.model
    config = _config(dataset, data_dir, args.config_file)
    _, outer = load_and_split(config)
    models: dict[str, Any] = {model: GENERATORS[model](**best)}
    models.update({name: build_model(config, name) for name in references})
    ev = evaluate(outer, models, (10,))
    return {n: float(np.nanmean(ev.runs[n].metrics[10].per_user()["ndcg"])) for n in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--model", required=True, choices=sorted(GENERATORS))
    parser.add_argument("--grid", action="append", default=[], help="key=v1,v2 (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="key=value for every point")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--references", default="", help="members measured beside the best")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--test-all",
        action="store_true",
        help="also measure every point on the test part (diagnosis; the choice ignores it)",
    )
    parser.add_argument(
        "--no-config-file",
        dest="config_file",
        action="store_false",
        help="start from the members' defaults, not configs/<dataset>.toml",
    )
    args = parser.parse_args()
    config = _config(args.dataset, args.data_dir, args.config_file)
    fixed = {k: v[0] for k, v in _pairs(args.set).items()}
    grid = _pairs(args.grid)
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    threads = max(1, (os.cpu_count() or 1) // max(1, args.workers))
    where = (args.dataset, args.data_dir, args.model)
    jobs = [
        (*where, _settings(config, args.model, {**fixed, **p}), threads, args.test_all)
        for p in points
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_measure, jobs))
    for row, point in zip(rows, points, strict=True):
        value = row["validation_ndcg@10"]
        test = f"  test {row['test_ndcg@10']:.4f}" if "test_ndcg@10" in row else ""
        print(f"{point}  validation NDCG@10 {value:.4f}{test}  {row['seconds']:.0f} s")
    best = max(rows, key=lambda r: r["validation_ndcg@10"])
    references = [r for r in args.references.split(",") if r]
    test = _test_figures(args, best["settings"], references)
    print(f"best on validation: {best['settings']}")
    print("test NDCG@10: " + ", ".join(f"{n} {v:.4f}" for n, v in test.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"points": rows, "best": best, "test": test}, indent=1))
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
