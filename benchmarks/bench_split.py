"""Speed and memory of load + validate + prepare + split for a large synthetic log.

Goal (issue 2): 5 M interactions in <= 15 s and <= 3 GB peak memory on 2 cores.
The data file is generated once (not timed) and cached under out/bench/; the measured part
runs in a fresh child process so that its peak memory is its own.

    python benchmarks/bench_split.py [--interactions 5000000] [--format csv|parquet]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GOAL_SECONDS = 15.0
GOAL_PEAK_GB = 3.0


def _ensure_data(n_interactions: int, fmt: str) -> Path:
    from recsemble.data.synthetic import SyntheticConfig, write_synthetic

    out = Path("out/bench") / f"synthetic-{n_interactions}-{fmt}"
    if not (out / f"interactions.{fmt}").exists():
        config = SyntheticConfig(
            seed=7,
            n_users=max(100, n_interactions // 25),
            n_items=max(100, n_interactions // 100),
            n_interactions=n_interactions,
        )
        print(f"generating {n_interactions:,} interactions into {out} (not timed) ...", flush=True)
        write_synthetic(out, config, fmt=fmt)  # type: ignore[arg-type]
    return out / f"interactions.{fmt}"


def _measure(path: Path) -> None:
    """Child process: the timed part. Prints one JSON line."""
    from recsemble.data.loaders import load_dataset
    from recsemble.evaluation.protocol import prepare, split

    t0 = time.perf_counter()
    dataset = load_dataset(path, event_weights={"view": 1.0, "cart": 3.0, "purchase": 5.0})
    t1 = time.perf_counter()
    prepared = prepare(dataset)
    t2 = time.perf_counter()
    by_user = split(prepared, "temporal-user")
    t3 = time.perf_counter()
    by_time = split(prepared, "temporal-global")
    t4 = time.perf_counter()
    print(
        json.dumps(
            {
                "rows": dataset.n_interactions,
                "users": prepared.n_users,
                "items": prepared.n_items,
                "train": by_user.train.n_interactions,
                "load_validate_s": t1 - t0,
                "prepare_s": t2 - t1,
                "split_temporal_user_s": t3 - t2,
                "split_temporal_global_s": t4 - t3,
                "total_s": t3 - t0,
                "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "global_n_test": by_time.test.n_interactions,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(args.measure)
        return 0
    path = _ensure_data(args.interactions, args.format)
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    command = "python benchmarks/bench_split.py"
    print(f"command: {command} --interactions {args.interactions} --format {args.format}")
    print(f"file: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    print(f"rows {figures['rows']:,}; after prepare {figures['users']:,} users, ", end="")
    print(f"{figures['items']:,} items")
    for key in ("load_validate_s", "prepare_s", "split_temporal_user_s", "split_temporal_global_s"):
        print(f"  {key:24s} {figures[key]:7.2f} s")
    ok_time = figures["total_s"] <= GOAL_SECONDS
    ok_mem = figures["peak_gb"] <= GOAL_PEAK_GB
    print(
        f"load + validate + prepare + split: {figures['total_s']:.2f} s (goal <= {GOAL_SECONDS} s) "
        f"{'OK' if ok_time else 'MISSED'}"
    )
    verdict = "OK" if ok_mem else "MISSED"
    print(f"peak memory: {figures['peak_gb']:.2f} GB (goal <= {GOAL_PEAK_GB} GB) {verdict}")
    return 0 if ok_time and ok_mem else 1


if __name__ == "__main__":
    raise SystemExit(main())
