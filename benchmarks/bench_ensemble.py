"""The ensemble beside its members and the popularity baselines, in one run per split (issue 4).

For each dataset and protocol: one split (recsemble's prepare + split), every model fitted on
its train part (members with the dataset's tuned config, configs/<dataset>.toml, when there is
one; the ensemble with its defaults over those members) and scored on the test part. Prints
NDCG@10 per model and per history slice, the paired 95% bootstrap CI of the ensemble minus the
best single member and minus popularity, the ensemble's fit time, the candidate recall of its
union, and (with --latency) the in-process latency of one-user `recommend` calls.

    python benchmarks/bench_ensemble.py [--datasets ml-100k,ml-latest-small]
        [--protocols temporal-user,temporal-global] [--data-dir ../shared/datasets]
        [--latency 300] [--json out/bench-ensemble.json]
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
from recsemble.evaluation.runner import Evaluation, evaluate
from recsemble.evaluation.significance import paired_comparison
from recsemble.evaluation.slices import HISTORY_SLICES
from recsemble.evaluation.workflow import build_model, load_and_split
from recsemble.ranking.ensemble import Ensemble

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = (
    "pop,pop-trending,itemknn,itemknn-recent,userknn,ials,bpr,ease,ease-recent,content,covisit"
)
BASELINES = ("pop", "pop-trending")


def _config(dataset: str, protocol: str, data_dir: str) -> Any:
    path = ROOT / "configs" / f"{dataset}.toml"
    sets = {"data.dataset": dataset, "data.data_dir": data_dir, "protocol.name": protocol}
    return resolve(path if path.is_file() else None, sets).config


def _ndcg(ev: Evaluation, name: str, k: int = 10) -> float:
    return float(ev.summary(name, k)[f"ndcg@{k}"])


def _per_user(ev: Evaluation, name: str) -> np.ndarray:
    return np.asarray(ev.runs[name].metrics[10].per_user()["ndcg"])


def _slice_ndcg(ev: Evaluation, name: str) -> dict[str, float]:
    values = _per_user(ev, name)
    return {
        s: float(values[ev.slice_labels == s].mean()) if np.any(ev.slice_labels == s) else np.nan
        for s in HISTORY_SLICES
    }


def _latency(model: Ensemble, users: np.ndarray, at: np.ndarray, n: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    pick = rng.choice(users.size, size=min(n, users.size), replace=False)
    model.recommend(users[pick[:5]], 10, at=at[pick[:5]])  # warm caches
    times = []
    for i in pick:
        start = time.perf_counter()
        model.recommend(users[i : i + 1], 10, at=at[i : i + 1])
        times.append((time.perf_counter() - start) * 1000)
    arr = np.asarray(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def run_one(dataset: str, protocol: str, data_dir: str, latency: int) -> dict[str, Any]:
    config = _config(dataset, protocol, data_dir)
    _, split = load_and_split(config)
    names = ["ensemble", *MEMBERS.split(",")]
    models = {name: build_model(config, name) for name in names}
    print(f"\n## {dataset}, {protocol}: {split.evaluated_users.size} users evaluated", flush=True)
    ev = evaluate(split, models, (10,))
    ens = models["ensemble"]
    assert isinstance(ens, Ensemble)
    members = [n for n in names if n != "ensemble"]
    scores = {n: _ndcg(ev, n) for n in names}
    best = max(members, key=lambda n: scores[n])
    best_pop = max(BASELINES, key=lambda n: scores[n])
    out: dict[str, Any] = {
        "dataset": dataset,
        "protocol": protocol,
        "ndcg@10": scores,
        "slices": {n: _slice_ndcg(ev, n) for n in ["ensemble", best, *BASELINES]},
        "slice_users": {s: int(np.sum(ev.slice_labels == s)) for s in HISTORY_SLICES},
        "best_member": best,
        "fit_seconds": ev.runs["ensemble"].fit_seconds,
        "recommend_all_seconds": ev.runs["ensemble"].recommend_seconds,
        "member_fit_seconds": dict(ens.fit_seconds_),
        "routes": ens.routes_,
    }
    for other in (best, best_pop):
        cmp = paired_comparison(_per_user(ev, "ensemble"), _per_user(ev, other), seed=0)
        out[f"vs_{other}"] = cmp
    if latency:
        users = split.evaluated_users
        out["latency"] = _latency(ens, users, split.reference_time[users], latency)
    _print(out)
    return out


def _print(r: dict[str, Any]) -> None:
    scores = r["ndcg@10"]
    print("| model | NDCG@10 |\n|---|---|")
    for name, value in sorted(scores.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {value:.4f} |")
    best = r["best_member"]
    for key in (k for k in r if k.startswith("vs_")):
        c = r[key]
        rel = c["mean_diff"] / scores[key[3:]] * 100
        print(
            f"ensemble - {key[3:]}: {c['mean_diff']:+.4f} ({rel:+.1f}%), 95% CI "
            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p={c['p_ttest']:.2g}"
        )
    print("\n| slice | users | ensemble | " + f"{best} (best member) | pop | pop-trending |")
    print("|---|---|---|---|---|---|")
    for s in HISTORY_SLICES:
        vals = [r["slices"][n][s] for n in ["ensemble", best, *BASELINES]]
        print(f"| {s} | {r['slice_users'][s]} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    print(
        f"\nensemble fit {r['fit_seconds']:.1f} s, recommend-all {r['recommend_all_seconds']:.1f} s"
    )
    if "latency" in r:
        lat = r["latency"]
        print(f"one-user recommend: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
    print("routes:", r["routes"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small")
    parser.add_argument("--protocols", default="temporal-user,temporal-global")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--latency", type=int, default=300, help="one-user calls timed (0: off)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    results = [
        run_one(d, p, args.data_dir, args.latency)
        for d in args.datasets.split(",")
        for p in args.protocols.split(",")
    ]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
