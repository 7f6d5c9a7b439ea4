"""Do the deep members (twotower, sasrec) make the ensemble better? (issue 8)

For each dataset: one temporal-user split; the ensemble with its default members (members with
the dataset's tuned config, configs/<dataset>.toml) and the same ensemble plus `twotower` and
`sasrec`, both fitted on the train part and scored on the test part. Prints NDCG@10 of each,
each deep member alone, the paired 95% bootstrap CI of (with - without) per user, and the
ensemble analysis of the extended ensemble: each member's leave-one-out NDCG change and the
members forward selection keeps, so that either the gain or the redundancy is on record.
Progress goes to stderr as timestamped lines: each model's fit (an ensemble's counted in member
fits, training sets and the ranker) and recommend, and each analysis stage, with counts and an
ETA at every quarter (the ml-latest-small run with sasrec takes over an hour).

    python benchmarks/bench_deep_members.py [--datasets ml-100k,ml-latest-small]
        [--data-dir ../shared/datasets] [--analysis-users 600] [--members twotower,sasrec]
        [--json out/bench-deep.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.config import resolve
from recsemble.evaluation.runner import evaluate
from recsemble.evaluation.significance import paired_comparison
from recsemble.evaluation.workflow import build_model, load_and_split
from recsemble.ranking.analysis import analyze
from recsemble.ranking.config import MemberConfig
from recsemble.ranking.training import ReportingEnsemble

ROOT = Path(__file__).resolve().parents[1]
DEEP = ("twotower", "sasrec")


def _config(dataset: str, data_dir: str) -> Any:
    path = ROOT / "configs" / f"{dataset}.toml"
    sets = {"data.dataset": dataset, "data.data_dir": data_dir, "protocol.name": "temporal-user"}
    return resolve(path if path.is_file() else None, sets).config


def _extended(config: Any, deep: tuple[str, ...]) -> ReportingEnsemble:
    """The configured ensemble plus the deep members; its fit reports each member fit."""
    members = [*config.ensemble.members, *(MemberConfig(model=name) for name in deep)]
    settings = config.ensemble.model_copy(update={"members": members})
    return ReportingEnsemble(config.model_copy(update={"ensemble": settings}))


class _StageLog:
    """progress(stage, done, total) as a timestamped stderr line when a stage starts, passes a
    quarter of its steps and ends: for logs, which a live bar cannot draw into."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.start = time.perf_counter()
        self.began: dict[str, float] = {}
        self.quarter: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage not in self.began:
            self.began[stage], self.quarter[stage] = now, 0
            if done < total:
                self._line(f"{stage}: started")
        quarter = 4 * done // max(total, 1)
        if quarter > self.quarter[stage]:
            self.quarter[stage] = quarter
            took = now - self.began[stage]
            eta = f", eta {took * (total - done) / done:.0f} s" if done < total else ""
            self._line(f"{stage}: {done}/{total} after {took:.0f} s{eta}")

    def _line(self, text: str) -> None:
        clock = time.perf_counter() - self.start
        print(f"[{clock:6.0f} s] {self.dataset} {text}", file=sys.stderr, flush=True)


def _run(dataset: str, data_dir: str, analysis_users: int, deep: tuple[str, ...]) -> dict[str, Any]:
    config = _config(dataset, data_dir)
    _, the_split = load_and_split(config)
    models: dict[str, Any] = {"ensemble": build_model(config, "ensemble")}
    models["ensemble+deep"] = _extended(config, deep)
    models.update({name: build_model(config, name) for name in deep})
    start = time.perf_counter()
    log = _StageLog(dataset)
    ev = evaluate(the_split, models, (10,), progress=lambda m, st, d, t: log(f"{m} {st}", d, t))
    per_user = {n: np.asarray(ev.runs[n].metrics[10].per_user()["ndcg"]) for n in models}
    row: dict[str, Any] = {
        "dataset": dataset,
        "deep": list(deep),
        "ndcg@10": {n: float(np.nanmean(v)) for n, v in per_user.items()},
        "fit_seconds": {n: round(run.fit_seconds, 1) for n, run in ev.runs.items()},
        "with_minus_without": paired_comparison(per_user["ensemble+deep"], per_user["ensemble"]),
    }
    extended = models["ensemble+deep"]
    users = the_split.evaluated_users
    sample = np.sort(np.random.default_rng(0).choice(users, min(analysis_users, users.size), False))
    from recsemble.ranking.analysis import evaluation_pool

    pool = evaluation_pool(extended, the_split, sample.astype(np.int32))
    result = analyze(extended, the_split, k=10, test_pool=pool, progress=log)
    row["leave_one_out_delta"] = {m: result.loo_delta(m)["all"] for m in result.members}
    row["recommended"] = list(result.recommended)
    row["prune_line"] = result.prune_line
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _print(row: dict[str, Any]) -> None:
    ndcg, diff = row["ndcg@10"], row["with_minus_without"]
    print(f"\n{row['dataset']}: NDCG@10 " + ", ".join(f"{n} {v:.4f}" for n, v in ndcg.items()))
    print(
        f"  ensemble+deep - ensemble: {diff['mean_diff']:+.4f} "
        f"[95% CI {diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}], p = {diff['p_wilcoxon']:.3g}"
    )
    loo = row["leave_one_out_delta"]
    print("  leave-one-out NDCG change (negative: the member helps): " + ", ".join(
        f"{m} {v:+.4f}" for m, v in loo.items()
    ))  # fmt: skip
    kept = [m for m in row["deep"] if m in row["recommended"]]
    print(f"  forward selection keeps {row['recommended']} -> deep members kept: {kept or 'none'}")
    print(f"  fit seconds: {row['fit_seconds']}; total {row['seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--analysis-users", type=int, default=600)
    parser.add_argument("--members", default=",".join(DEEP), help="deep members to add")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    deep = tuple(args.members.split(","))
    rows = [_run(d, args.data_dir, args.analysis_users, deep) for d in args.datasets.split(",")]
    for row in rows:
        _print(row)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    print("\ncommand: python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
