"""Epoch time and training throughput of the deep members on a GPU versus 2 CPU cores (issue 8).

A synthetic interaction log (recsemble.data.synthetic: Zipf popularity, sessions; 10M events by
default) is built once; then, for each member (twotower, sasrec) and device, the member's own
training step (the functions its fit runs: same network, loss, batches, mixed precision on
CUDA) is repeated over one epoch's mini-batches, until the epoch ends or --seconds have passed.
A full epoch is timed where it finished; otherwise the epoch time is estimated from the steps
per second (marked "est."). The CPU rows run pinned to --cpu-threads cores (sched_setaffinity
plus torch.set_num_threads), as on a 2-core machine. The first --warmup steps are not timed.

    python benchmarks/bench_deep_gpu.py [--interactions 10000000] [--users 200000]
        [--items 50000] [--devices cuda,cpu] [--members twotower,sasrec] [--seconds 60]
        [--large-batch sasrec=512,twotower=4096] [--json out/bench-deep-gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import EVENT_WEIGHTS, SyntheticConfig, generate
from recsemble.generators import neural
from recsemble.generators.history import Histories

Step = Callable[[Any], None]


@dataclass
class Plan:
    """One epoch of a member's training: its batches, a step function and examples per batch."""

    batches: list[Any]
    step: Step
    examples: Callable[[Any], int]


def synthetic(n_interactions: int, n_users: int, n_items: int) -> Dataset:
    config = SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=n_interactions)
    interactions, items, users = generate(config)
    weights = {e: EVENT_WEIGHTS.get(e, 1.0) for e in interactions["event"].unique().to_list()}
    return Dataset.from_frames(interactions, items, users, event_weights=weights, name="synthetic")


def sasrec_plan(dataset: Dataset, device: torch.device, batch_size: int | None) -> Plan:
    from recsemble.generators.sasrec import (
        SASRecConfig,
        build_network,
        next_item_loss,
        shuffle_ties,
        training_windows,
    )

    cfg = SASRecConfig(device=device.type, **({"batch_size": batch_size} if batch_size else {}))
    generator = neural.seed_everything(cfg.seed)
    network = build_network(dataset.n_items, cfg).to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr)
    histories = shuffle_ties(Histories.from_dataset(dataset), np.random.default_rng(0))
    inputs, targets = (torch.from_numpy(a) for a in training_windows(histories, cfg.max_len))

    def step(batch: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        with neural.autocast(device):
            loss = next_item_loss(
                network, inputs[batch].to(device), targets[batch].to(device), cfg, generator
            )
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    order = list(neural.batches(inputs.shape[0], cfg.batch_size, generator))
    return Plan(order, step, lambda batch: int((targets[batch][..., 0] > 0).sum()))


def twotower_plan(dataset: Dataset, device: torch.device, batch_size: int | None) -> Plan:
    from recsemble.generators.twotower import TwoTowerConfig, content_features
    from recsemble.generators.twotower_net import Pairs, batch_loss, build_network, make_batch

    cfg = TwoTowerConfig(device=device.type, **({"batch_size": batch_size} if batch_size else {}))
    generator = neural.seed_everything(cfg.seed)
    features = content_features(dataset, cfg)
    net = build_network(cfg, features, np.asarray(dataset.item_popularity > 0)).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    pairs = Pairs.from_histories(Histories.from_dataset(dataset))
    log_q = pairs.log_q(dataset.n_items).to(device)

    def step(picked: Any) -> None:
        batch = make_batch(pairs, picked.numpy(), cfg.history_len, None, device)
        with neural.autocast(device):
            loss = batch_loss(net, batch, log_q, cfg.temperature, 1.0 - cfg.id_dropout)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()

    order = list(neural.batches(pairs.targets.size, cfg.batch_size, generator))
    return Plan(order, step, lambda picked: int(picked.numel()))


PLANS = {"sasrec": sasrec_plan, "twotower": twotower_plan}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(plan: Plan, device: torch.device, seconds: float, warmup: int) -> dict[str, Any]:
    steps: Iterator[Any] = iter(plan.batches)
    for batch in (next(steps) for _ in range(min(warmup, len(plan.batches) - 1))):
        plan.step(batch)
    _sync(device)
    done, examples, start = 0, 0, time.perf_counter()
    for batch in steps:
        plan.step(batch)
        done, examples = done + 1, examples + plan.examples(batch)
        if time.perf_counter() - start > seconds:
            break
    _sync(device)
    elapsed = time.perf_counter() - start
    per_step = elapsed / max(1, done)
    finished = done + min(warmup, len(plan.batches) - 1) == len(plan.batches)
    return {
        "steps": done,
        "steps_per_epoch": len(plan.batches),
        "seconds": round(elapsed, 2),
        "examples_per_s": round(examples / elapsed),
        "epoch_s": round(per_step * len(plan.batches), 1),
        "epoch_measured": finished,  # else estimated from the steps per second
    }


def run_one(
    dataset: Dataset, member: str, device_name: str, batch: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    device = torch.device(device_name)
    cores = os.sched_getaffinity(0)
    if device.type == "cpu":  # as on a machine with cpu_threads cores
        os.sched_setaffinity(0, sorted(cores)[: args.cpu_threads])
        torch.set_num_threads(args.cpu_threads)
    else:
        torch.cuda.reset_peak_memory_stats()
    try:
        row = _timed(PLANS[member](dataset, device, batch), device, args.seconds, args.warmup)
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(len(cores))
    row.update(member=member, device=device_name, batch_size=batch or "default")
    if device.type == "cuda":
        row["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def _print(rows: list[dict[str, Any]], n_events: int) -> None:
    print("\n| member | device | batch | s/epoch | examples/s | events/s | steps timed | GPU MiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        epoch = f"{r['epoch_s']:,}" + ("" if r["epoch_measured"] else " est.")
        print(
            f"| {r['member']} | {r['device']} | {r['batch_size']} | {epoch} | "
            f"{r['examples_per_s']:,} | {round(n_events / r['epoch_s']):,} | "
            f"{r['steps']}/{r['steps_per_epoch']} | {r.get('gpu_peak_mib', '-')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--devices", default="cuda,cpu")
    parser.add_argument("--members", default="twotower,sasrec")
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--large-batch", default="sasrec=512,twotower=4096", help="extra cuda rows")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    dataset = synthetic(args.interactions, args.users, args.items)
    print(
        f"synthetic: {dataset.n_interactions:,} events, {dataset.n_users:,} users, "
        f"{dataset.n_items:,} items, built in {time.perf_counter() - start:.0f} s"
    )
    large = dict(p.split("=") for p in args.large_batch.split(",") if p)
    rows = []
    for member in args.members.split(","):
        for device in args.devices.split(","):
            if device == "cuda" and not torch.cuda.is_available():
                print(f"{member}: no CUDA device here, cuda row skipped")
                continue
            bigger = device == "cuda" and member in large
            batches = [None] + ([int(large[member])] if bigger else [])
            for batch in batches:
                rows.append(run_one(dataset, member, device, batch, args))
                print(json.dumps(rows[-1]), flush=True)
    _print(rows, dataset.n_interactions)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n_events": dataset.n_interactions, "rows": rows}))
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
