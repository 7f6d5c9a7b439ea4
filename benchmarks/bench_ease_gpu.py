"""EASE on the CPU (numpy/scipy) and on a CUDA GPU (torch), side by side (issue 3).

For each device (cuda only when torch sees a GPU) EASE is fitted and asked for top-10 lists on:

- a MovieLens release (default ml-latest-small) under the temporal-user protocol: fit on the
  train part, top-10 for every evaluated user at their reference time, NDCG@10 on the test part;
- a synthetic implicit data set (recsemble.data.synthetic, default 50k users x 20k items and
  ~5M events): fit on everything, top-10 for every user (seen items excluded).

Reported per run: fit and recommend-all seconds (wall clock; the fit waits for the GPU to
finish, and scoring copies its results back to numpy), peak GPU memory for cuda (torch's
allocator), and for the synthetic set the time of the CPU route's Gram matrix (numpy builds it on
the CPU when users >= items; the cuda route builds its own on the GPU).
Across devices: the share of identical top-10 items (float32 near-ties may swap) and, on
MovieLens, the NDCG@10 difference, which must stay within --ndcg-tolerance.

    python benchmarks/bench_ease_gpu.py [--devices cpu,cuda] [--data-dir ../shared/datasets]
        [--dataset ml-latest-small] [--synthetic 50000x20000x5000000|none]
        [--synthetic-devices cpu,cuda] [--cpu-users N] [--json out/bench-ease-gpu.json]

On a machine without a GPU only the cpu rows run; --synthetic none skips the big set.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
K = 10
MiB = 2**20


@dataclass
class DeviceRun:
    """One device's figures on one data set (the lists are kept for the agreement check)."""

    device: str
    resolved: str  # what EASE.device_ said: "cuda", or "numpy" for the scipy route
    fit_s: float
    recommend_s: float
    users: int
    items: npt.NDArray[np.int32] = field(repr=False)
    gpu_peak_mib: float | None = None
    gram_s: float | None = None
    ndcg: float | None = None


# -- devices -------------------------------------------------------------------------------
def usable_devices(requested: list[str]) -> tuple[list[str], str]:
    """The requested devices this machine can run, and what the GPU is (or why there is none)."""
    try:
        import torch
    except ImportError:
        return [d for d in requested if d != "cuda"], "no GPU: torch is not installed"
    if not torch.cuda.is_available():
        return [d for d in requested if d != "cuda"], f"no GPU: torch {torch.__version__} sees none"
    props = torch.cuda.get_device_properties(0)
    gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return requested, gpu


def warm_up_cuda() -> float:
    """Seconds to create the CUDA context and load cuBLAS/cuSOLVER, kept out of every timing."""
    import scipy.sparse as sp

    from recsemble.generators.ease import ease_weights, score_profiles

    start = time.perf_counter()
    x = sp.csr_array(sp.random_array((64, 32), density=0.3, random_state=0))
    weights = ease_weights(x, 10.0, "cuda")
    score_profiles(x, weights, "cuda")
    return time.perf_counter() - start


def _synchronize(device: str) -> None:
    """Wait for the GPU: a cuda fit leaves B on the device, maybe with kernels in flight."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _reset_gpu_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mib(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return float(torch.cuda.max_memory_allocated()) / MiB


def _device_run(
    model: Any, fit_s: float, recommend_s: float, items: npt.NDArray[np.int32]
) -> DeviceRun:
    device = model.config.device
    return DeviceRun(
        device=device,
        resolved=model.device_ or "numpy",
        fit_s=fit_s,
        recommend_s=recommend_s,
        users=items.shape[0],
        items=items,
        gpu_peak_mib=_gpu_peak_mib(device),
    )


# -- runs ----------------------------------------------------------------------------------
def run_movielens(args: argparse.Namespace, devices: list[str]) -> dict[str, Any]:
    from recsemble.data import load_dataset
    from recsemble.evaluation import compute_metrics, prepare, split
    from recsemble.evaluation.runner import catalog_stats, recommend_for_split, truth_matrix
    from recsemble.generators.ease import EASE

    the_split = split(prepare(load_dataset(args.dataset, data_dir=args.data_dir)), "temporal-user")
    train, users = the_split.train, the_split.evaluated_users
    truth, stats = truth_matrix(the_split, users), catalog_stats(the_split)
    print(
        f"[{args.dataset}] {train.n_users:,} users x {train.n_items:,} items, "
        f"{train.n_interactions:,} train rows, {users.size:,} evaluated users",
        flush=True,
    )
    runs = []
    for device in devices:
        model = EASE(device=device)
        _reset_gpu_peak(device)
        start = time.perf_counter()
        model.fit(train)
        _synchronize(device)
        fitted = time.perf_counter()
        top = recommend_for_split(model, the_split, users, K)
        ranked = time.perf_counter()
        run = _device_run(model, fitted - start, ranked - fitted, top.items)
        run.ndcg = float(compute_metrics(top.items, truth, K, stats).summary()[f"ndcg@{K}"])
        print(f"[{args.dataset}] {_describe(run)}", flush=True)
        runs.append(run)
    shape = (train.n_users, train.n_items)
    return _summarise(args.dataset, runs, shape, (train.n_interactions, "train rating rows"))


def run_synthetic(args: argparse.Namespace, devices: list[str]) -> dict[str, Any]:
    from recsemble.data.synthetic import SyntheticConfig, load_synthetic
    from recsemble.generators.ease import EASE, gram_matrix

    n_users, n_items, n_events = (int(v) for v in args.synthetic.split("x"))
    config = SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=n_events)
    start = time.perf_counter()
    data = load_synthetic(config=config)
    x = data.user_item_matrix("binary")
    name = f"synthetic {n_users // 1000}k x {n_items // 1000}k"
    print(
        f"[{name}] {data.n_users:,} users x {data.n_items:,} items, {data.n_interactions:,} "
        f"events, {x.nnz:,} distinct pairs (built in {time.perf_counter() - start:.1f} s)",
        flush=True,
    )
    gram_start = time.perf_counter()
    gram_matrix(x)  # the numpy route's Gram (users >= items), shown apart
    gram_s = time.perf_counter() - gram_start
    runs = []
    for device in devices:
        capped = device == "cpu" and args.cpu_users is not None
        users = np.arange(min(args.cpu_users, data.n_users) if capped else data.n_users)
        model = EASE(device=device)
        _reset_gpu_peak(device)
        start = time.perf_counter()
        model.fit(data)
        _synchronize(device)
        fitted = time.perf_counter()
        top = model.recommend(users.astype(np.int32), K)
        ranked = time.perf_counter()
        run = _device_run(model, fitted - start, ranked - fitted, top.items)
        run.gram_s = gram_s if device == "cpu" else None
        print(f"[{name}] {_describe(run)}", flush=True)
        runs.append(run)
        del model
    shape = (data.n_users, data.n_items)
    return _summarise(name, runs, shape, (x.nnz, "distinct user-item pairs"))


# -- report --------------------------------------------------------------------------------
def _describe(run: DeviceRun) -> str:
    parts = [
        f"{run.device} (ran as {run.resolved}): fit {run.fit_s:.2f} s",
        f"recommend {run.users:,} users {run.recommend_s:.2f} s",
    ]
    if run.gram_s is not None:
        parts.append(f"Gram on CPU {run.gram_s:.2f} s")
    if run.gpu_peak_mib is not None:
        parts.append(f"GPU peak {run.gpu_peak_mib:,.0f} MiB")
    if run.ndcg is not None:
        parts.append(f"NDCG@{K} {run.ndcg:.4f}")
    return ", ".join(parts)


def list_agreement(a: npt.NDArray[np.int32], b: npt.NDArray[np.int32]) -> dict[str, float]:
    """Over the rows both have: share of items in both top-k sets, and of identical positions."""
    rows = min(a.shape[0], b.shape[0])
    a, b = a[:rows], b[:rows]
    same_set = [np.intersect1d(x[x >= 0], y[y >= 0]).size for x, y in zip(a, b, strict=True)]
    filled = max(1, int(np.count_nonzero(a >= 0)))
    return {
        "rows": rows,
        "same_items": float(sum(same_set)) / filled,
        "same_positions": float(np.mean(a == b)),
        "same_lists": float(np.mean(np.all(a == b, axis=1))),
    }


def _summarise(
    name: str, runs: list[DeviceRun], shape: tuple[int, int], pairs: tuple[int, str]
) -> dict[str, Any]:
    by_device = {r.device: r for r in runs}
    out: dict[str, Any] = {"name": name, "users": shape[0], "items": shape[1]}
    out |= {"pairs": pairs[0], "pairs_are": pairs[1]}
    out["runs"] = [{k: v for k, v in vars(r).items() if k != "items"} for r in runs]
    if "cpu" in by_device and "cuda" in by_device:
        cpu, cuda = by_device["cpu"], by_device["cuda"]
        out["agreement"] = list_agreement(cpu.items, cuda.items)
        if cpu.ndcg is not None and cuda.ndcg is not None:
            out["ndcg_difference"] = abs(cpu.ndcg - cuda.ndcg)
    return out


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """The markdown tables; False when the devices' NDCG@10 differ by more than the tolerance."""
    ok = True
    for result in results:
        print(
            f"\n### {result['name']}: {result['users']:,} users x {result['items']:,} items, "
            f"{result['pairs']:,} {result['pairs_are']}\n"
        )
        print("| device | ran as | fit s | recommend-all s | users | GPU peak MiB | NDCG@10 |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in result["runs"]:
            peak = "-" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:,.0f}"
            ndcg = "-" if r["ndcg"] is None else f"{r['ndcg']:.4f}"
            print(
                f"| {r['device']} | {r['resolved']} | {r['fit_s']:.2f} | {r['recommend_s']:.2f} "
                f"| {r['users']:,} | {peak} | {ndcg} |"
            )
        gram = next((r["gram_s"] for r in result["runs"] if r["gram_s"] is not None), None)
        if gram is not None:
            print(
                f"\nGram matrix X^T X on the CPU (scipy) alone: {gram:.2f} s (inside the cpu fit "
                "when users >= items; the cuda fit builds it on the GPU)"
            )
        if "agreement" in result:
            a = result["agreement"]
            print(
                f"\ncpu vs cuda top-{K} over {a['rows']:,} users: {a['same_items']:.2%} of items "
                f"in both lists, {a['same_positions']:.2%} at the same rank, "
                f"{a['same_lists']:.2%} of lists identical"
            )
        if "ndcg_difference" in result:
            diff = result["ndcg_difference"]
            verdict = "ok" if diff <= args.ndcg_tolerance else "TOO LARGE"
            ok = ok and diff <= args.ndcg_tolerance
            print(
                f"|NDCG@{K} cpu - cuda| = {diff:.2e} ({verdict}, tolerance {args.ndcg_tolerance})"
            )
    return ok


def _device_list(text: str) -> list[str]:
    devices = [d for d in text.split(",") if d]
    unknown = sorted(set(devices) - {"cpu", "cuda"})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown devices {unknown}; use cpu and/or cuda")
    return devices


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=_device_list, default=["cpu", "cuda"])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--dataset", default="ml-latest-small", help="a MovieLens release, or none")
    parser.add_argument("--synthetic", default="50000x20000x5000000", help="UxIxEVENTS, or none")
    parser.add_argument("--synthetic-devices", type=_device_list, help="default: --devices")
    parser.add_argument("--cpu-users", type=int, help="cap the synthetic cpu recommend-all users")
    parser.add_argument("--ndcg-tolerance", type=float, default=1e-3)
    parser.add_argument("--json", type=Path, default=Path("out/bench-ease-gpu.json"))
    args = parser.parse_args()
    command = ("python benchmarks/bench_ease_gpu.py " + shlex.join(sys.argv[1:])).strip()
    devices, gpu = usable_devices(args.devices)
    print(f"devices: {', '.join(devices) or 'none'} ({gpu}); {os.cpu_count()} CPU cores")
    if "cuda" in devices:
        print(
            f"CUDA warm-up (context, cuBLAS, cuSOLVER; not in any timing): {warm_up_cuda():.2f} s"
        )
    results = []
    if args.dataset != "none":
        results.append(run_movielens(args, devices))
    if args.synthetic != "none":
        wanted = args.synthetic_devices or args.devices
        results.append(run_synthetic(args, [d for d in wanted if d in devices]))
    ok = print_report(results, args)
    print(f"\ncommand: {command}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": command, "gpu": gpu, "cpus": os.cpu_count(), "results": results}
    args.json.write_text(json.dumps(document, indent=1))
    print(f"figures written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
