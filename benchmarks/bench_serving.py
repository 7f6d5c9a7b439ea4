"""What serving_top and pruning cost and save: NDCG@10 and one-user latency of the ensemble
(issue 4).

For each dataset and protocol: one split, the default ensemble over configs/<dataset>.toml's
members fitted once on its train part (with --prune, without those members), then for each
--serving-top value the test NDCG@10 and the p50 / p99 of one-user `recommend` calls on the
same users (as fitted, and with one fresh event appended to each user's history: the
real-time path, where members compute instead of reading stored answers), and (--members)
each member's one-user `score_catalog` median / p99.

    python benchmarks/bench_serving.py [--datasets ml-latest-small] [--protocols temporal-user]
        [--serving-top none,100,50,30] [--prune pop-trending,userknn] [--latency 200]
        [--members] [--data-dir ../shared/datasets] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.config import resolve
from recsemble.evaluation.metrics import compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import catalog_stats, recommend_for_split, truth_matrix
from recsemble.evaluation.workflow import build_model, load_and_split
from recsemble.generators.history import Histories
from recsemble.ranking.ensemble import Ensemble

ROOT = Path(__file__).resolve().parents[1]


def _percentiles(call: Callable[[int], object], picks: np.ndarray) -> tuple[float, float]:
    call(int(picks[0]))  # warm caches
    times = []
    for i in picks.tolist():
        start = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _with_fresh_event(ens: Ensemble, user: int, at: int) -> Histories:
    """The user's fitted history plus one new event (the most popular item not in it, a
    minute before the request): the real-time update path, where no member reads a stored
    answer for the user and every member computes."""
    hist = ens.histories_.rows([user])
    counts = np.bincount(ens.histories_.items, minlength=ens.n_items_)
    counts[hist.items] = -1
    item = int(np.argmax(counts))
    stamp = max(at - 60, int(hist.timestamps.max()) if hist.items.size else at - 60)
    return Histories(
        np.array([0, hist.items.size + 1]),
        np.append(hist.items, item),
        np.append(hist.timestamps, stamp),
        np.append(hist.weights, 1.0),
        hist.n_items,
    )


def _fitted(dataset: str, protocol: str, data_dir: str, prune: list[str]) -> tuple[Any, Split]:
    path = ROOT / "configs" / f"{dataset}.toml"
    sets: dict[str, Any] = {
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "protocol.name": protocol,
    }
    config = resolve(path if path.is_file() else None, sets).config
    _, the_split = load_and_split(config)
    ens = build_model(config, "ensemble")
    assert isinstance(ens, Ensemble)
    ens.config = ens.config.model_copy(update={"prune": prune})
    start = time.perf_counter()
    ens.fit(the_split.train)
    print(f"ensemble fit {time.perf_counter() - start:.1f} s ({len(ens.members_)} members)")
    return ens, the_split


def run_one(dataset: str, protocol: str, args: argparse.Namespace) -> dict[str, Any]:
    prune = [p for p in args.prune.split(",") if p]
    ens, the_split = _fitted(dataset, protocol, args.data_dir, prune)
    users = the_split.evaluated_users
    at = the_split.reference_time[users]
    truth, stats = truth_matrix(the_split, users), catalog_stats(the_split)
    picks = np.random.default_rng(0).choice(users.size, min(args.latency, users.size), False)
    fresh = {i: _with_fresh_event(ens, int(users[i]), int(at[i])) for i in picks.tolist()}
    rows = []
    for value in args.serving_top.split(","):
        top = None if value == "none" else int(value)
        ens.config = ens.config.model_copy(update={"serving_top": top})
        lists = recommend_for_split(ens, the_split, users, 10)
        ndcg = float(np.mean(compute_metrics(lists.items, truth, 10, stats).ndcg))
        p50, p99 = _percentiles(
            lambda i: ens.recommend(users[i : i + 1], 10, at=at[i : i + 1]), picks
        )
        fresh50, fresh99 = _percentiles(
            lambda i: ens.recommend(users[i : i + 1], 10, at=at[i : i + 1], histories=fresh[i]),
            picks,
        )
        rows.append(
            {
                "serving_top": value,
                "ndcg@10": ndcg,
                "p50_ms": p50,
                "p99_ms": p99,
                "fresh_p50_ms": fresh50,
                "fresh_p99_ms": fresh99,
            }
        )
        print(
            f"serving_top {value:>5}: NDCG@10 {ndcg:.4f}, one-user p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms; with a fresh event p50 {fresh50:.1f} ms, p99 {fresh99:.1f} ms"
        )
    members: dict[str, dict[str, float]] = {}
    if args.members:
        for label, member in ens.members_.items():

            def one(i: int, m: Any = member) -> object:
                return m.score_catalog(users[i : i + 1], exclude_seen=False, at=at[i : i + 1])

            p50, p99 = _percentiles(one, picks)
            members[label] = {"p50_ms": p50, "p99_ms": p99}
        for label, t in sorted(members.items(), key=lambda kv: -kv[1]["p99_ms"]):
            print(f"  {label:16s} score_catalog p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms")
    return {
        "dataset": dataset,
        "protocol": protocol,
        "prune": prune,
        "rows": rows,
        "members": members,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-latest-small")
    parser.add_argument("--protocols", default="temporal-user")
    parser.add_argument("--serving-top", default="none,100,50,30")
    parser.add_argument("--prune", default="", help="comma-separated member labels")
    parser.add_argument("--latency", type=int, default=200, help="one-user calls timed")
    parser.add_argument("--members", action="store_true", help="time each member too")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.latency < 1:
        parser.error("--latency must be >= 1")
    for value in args.serving_top.split(","):
        if value != "none" and not (value.isdigit() and int(value) >= 1):
            parser.error(f"--serving-top takes 'none' or integers >= 1, got {value!r}")
    command = "python benchmarks/bench_serving.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command}")
    results = []
    for dataset in args.datasets.split(","):
        for protocol in args.protocols.split(","):
            print(f"\n## {dataset}, {protocol}")
            results.append(run_one(dataset, protocol, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=1))


if __name__ == "__main__":
    main()
