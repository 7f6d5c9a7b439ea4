"""Latency of `Recommender.recommend` on a saved model: the request path serving runs.

Loads the model folder, warms it (every known user's pool in batch), then times requests for
random users: a share of them unknown to the model (cold start), optionally interleaved with
`observe()` calls (live events, which queue background pool refreshes). Prints load and warm
times and p50 / p95 / p99 milliseconds per request, overall and per kind of user.

With --rps the calls are paced (open loop, one caller thread): each one's latency counts from
its scheduled start, so time spent waiting behind the refresh worker (the GIL) shows.

    python benchmarks/bench_recommender.py --model out/model [--requests 5000] [--k 10]
        [--unknown-share 0.1] [--events-share 0.1] [--rps 300] [--rerank mmr,cap]
        [--explain-every 0]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from recsemble.config import RecsembleConfig
from recsemble.pipeline import Recommender, RequestOptions
from recsemble.store.base import Event


def _percentiles(ms: list[float]) -> str:
    if not ms:
        return "n=0"
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    spread = f"p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  p99 {p99:6.2f} ms"
    return f"n={len(ms):5d}  {spread}  max {max(ms):6.1f} ms"


def _run(rec: Recommender, args: argparse.Namespace) -> dict[str, list[float]]:
    """Milliseconds per call, by kind: known / unknown users, explained requests, observe."""
    rng = np.random.default_rng(args.seed)
    users = [str(u) for u in rec.users.ids]
    items = [str(i) for i in rec.items.ids.ids]
    stages = None if args.rerank is None else tuple(args.rerank.split(","))
    timings: dict[str, list[float]] = {"known": [], "unknown": [], "explain": [], "observe": []}
    origin = time.perf_counter()
    for n in range(args.requests):
        begin = time.perf_counter()
        if args.rps is not None:  # open loop: latency counts from the scheduled start
            begin = origin + n / args.rps
            time.sleep(max(0.0, begin - time.perf_counter()))
        if rng.random() < args.events_share:
            user = users[int(rng.integers(len(users)))]
            event = Event(f"bench-{n}", user, items[int(rng.integers(len(items)))], "view", 0)
            rec.observe([event])
            timings["observe"].append((time.perf_counter() - begin) * 1e3)
            continue
        unknown = rng.random() < args.unknown_share
        user = f"bench-unknown-{n}" if unknown else users[int(rng.integers(len(users)))]
        explain = args.explain_every > 0 and n % args.explain_every == 0
        options = RequestOptions(k=args.k, rerank=stages, explain=explain)
        rec.recommend(user, options)
        elapsed = (time.perf_counter() - begin) * 1e3
        timings["explain" if explain else "unknown" if unknown else "known"].append(elapsed)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="folder of `recsemble train`")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--unknown-share", type=float, default=0.1)
    parser.add_argument("--events-share", type=float, default=0.0, help="observe() calls")
    parser.add_argument("--rerank", default=None, help="comma-separated stage names")
    parser.add_argument("--explain-every", type=int, default=0, help="every n-th asks explain")
    parser.add_argument("--rps", type=float, default=None, help="paced calls per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    print("$", shlex.join([Path(sys.executable).name, *sys.argv]))

    start = time.perf_counter()
    rec = Recommender.load(args.model, config=RecsembleConfig())
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    rec.warm()
    warm_s = time.perf_counter() - start
    print(f"load {load_s:.1f} s, warm {warm_s:.1f} s ({rec.serving.n_users} users)")

    timings = _run(rec, args)
    rec.close()

    reads = timings["known"] + timings["unknown"]
    print(f"recommend, all reads  {_percentiles(reads)}")
    for kind, ms in timings.items():
        if ms:
            print(f"  {kind:18s}  {_percentiles(ms)}")
    print("stats:", json.dumps(rec.stats()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"load_s": load_s, "warm_s": warm_s, **timings}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
