"""Spark (local[2]) beside the single machine on synthetic logs of 1M, 5M and 20M interactions.

Stages, each timed with its peak memory: read + prepare + split (temporal per user, 20% test),
the fit of pop, covisit, itemknn and ials (MLlib ALS on Spark), batch scoring of every user
with the saved itemknn model (lists with explanations, `recsemble batch`'s work), and the
metrics at 10 of those lists against the test part. Memory: peak RSS of the driver (this
process), of the JVM and of Spark's Python workers (sampled every 0.2 s from /proc), and the
JVM heap in use (Runtime totalMemory - freeMemory, same sampling).

Data: users ~ N/100, items ~ N/500 (at least 2,000), item popularity Zipf-like, user activity
log-normal, timestamps over 180 days; written once as out/bench-spark/<size>/interactions.parquet.

    .venv/bin/python benchmarks/bench_spark.py --sizes 1m,5m [--engines spark,local] [--scored none]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path("out/bench-spark")
SIZES = {"100k": 100_000, "1m": 1_000_000, "5m": 5_000_000, "20m": 20_000_000}
MEMBERS = ("pop", "covisit", "itemknn", "ials")
SCORED = "itemknn"
K = 10
DAY = 86_400


# ---------------------------------------------------------------------------- data
def synthetic(size: str, seed: int = 0) -> Path:
    """SIZES[size] interactions with popularity skew, written once (reused when present)."""
    n = SIZES[size]
    folder = OUT / size
    path = folder / "interactions.parquet"
    if path.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = max(1_000, n // 100), max(2_000, n // 500)
    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, size=n, p=activity / activity.sum())
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.permutation(n_items)[rng.choice(n_items, size=n, p=popularity / popularity.sum())]
    times = 1_700_000_000 + rng.integers(0, 180 * DAY, size=n)
    table = pa.table(
        {
            "user_id": pa.array(users.astype(np.int64)),
            "item_id": pa.array(items.astype(np.int64)),
            "timestamp": pa.array(times.astype(np.int64)),
        }
    )
    pq.write_table(table, path, row_group_size=1_000_000)
    return folder


# ---------------------------------------------------------------------------- memory
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(entry.name))
    return out


@dataclass
class Peaks:
    driver: float = 0.0
    jvm: float = 0.0
    workers: float = 0.0
    heap: float = 0.0


@dataclass
class Sampler:
    """Peak RSS of this process, its JVM child and the JVM's Python workers, and JVM heap."""

    heap: Callable[[], float] | None = None
    peaks: Peaks = field(default_factory=Peaks)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        me = os.getpid()
        tree = _children()
        jvms = tree.get(me, [])
        workers = [w for j in jvms for w in _descendants(tree, j)]
        p = self.peaks
        p.driver = max(p.driver, _rss_mb(me))
        p.jvm = max(p.jvm, sum(_rss_mb(j) for j in jvms))
        p.workers = max(p.workers, sum(_rss_mb(w) for w in workers))
        if self.heap is not None:
            with contextlib.suppress(Exception):  # the gateway is busy or gone: skip it
                p.heap = max(p.heap, self.heap())

    def run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    @contextmanager
    def stage(self) -> Iterator[Peaks]:
        self.peaks = Peaks()
        self._stop.clear()
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self.peaks
        finally:
            self._stop.set()
            thread.join()
            self.sample()


def _descendants(tree: dict[int, list[int]], pid: int) -> list[int]:
    out = []
    for child in tree.get(pid, []):
        out += [child, *_descendants(tree, child)]
    return out


@dataclass
class Row:
    engine: str
    size: str
    stage: str
    seconds: float
    peaks: Peaks
    note: str = ""


class Recorder:
    def __init__(self, engine: str, size: str, sampler: Sampler) -> None:
        self.engine, self.size, self.sampler = engine, size, sampler
        self.rows: list[Row] = []

    @contextmanager
    def stage(self, name: str, note: str = "") -> Iterator[None]:
        start = time.perf_counter()
        with self.sampler.stage() as peaks:
            yield
        row = Row(self.engine, self.size, name, time.perf_counter() - start, peaks, note)
        self.rows.append(row)
        print(_format(row), flush=True)


# ---------------------------------------------------------------------------- engines
def run_spark(folder: Path, size: str, work: Path, members: list[str], scored: str) -> list[Row]:
    from recsemble.config import RecsembleConfig
    from recsemble.ranking.ids import Catalog
    from recsemble.ranking.persistence import save_model
    from recsemble.spark import splits
    from recsemble.spark.batch import evaluate_lists, score_on_spark
    from recsemble.spark.data import read_source
    from recsemble.spark.members import fit_on_spark
    from recsemble.spark.session import spark_session
    from recsemble.spark.workflow import prepare_on_spark, training_data

    config = RecsembleConfig()
    spark = spark_session("local[2]", driver_memory="8g")
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()  # type: ignore[union-attr]
    sampler = Sampler(lambda: (runtime.totalMemory() - runtime.freeMemory()) / 2**20)
    rec = Recorder("spark", size, sampler)
    with rec.stage("read+prepare+split"):
        prepared = prepare_on_spark(read_source(spark, folder), config)
        split = splits.split(prepared, "temporal-user", 0.2)
        marked = split.marked.cache()
        marked.count()
    data = training_data(split.train, prepared)
    with rec.stage("gather histories (driver)"):
        _ = data.histories
    fitted = {}
    for name in members:
        with rec.stage(f"fit {name}"):
            fitted[name] = fit_on_spark(name, config.model_config_for(name), data)
    if scored == "none":
        spark.stop()
        return rec.rows
    model_dir = save_model(fitted[scored], work / "model", Catalog.from_dataset(
        splits.catalog_dataset(prepared)))  # fmt: skip
    train = split.train.select("user_id", "item_id", "timestamp", "weight")
    with rec.stage(f"batch scoring ({scored})"):
        lists = score_on_spark(train, model_dir, k=K, users_per_partition=20_000)
        lists.write.mode("overwrite").parquet(str(work / "lists"))
    with rec.stage("evaluation (metrics@10)"):
        written = spark.read.parquet(str(work / "lists"))
        summary = evaluate_lists(written, split, K).summary
    rec.rows[-1].note = f"ndcg@10={summary.get('ndcg@10', float('nan')):.4f}"
    spark.stop()
    return rec.rows


def run_local(folder: Path, size: str, work: Path, members: list[str], scored: str) -> list[Row]:
    from recsemble.config import RecsembleConfig
    from recsemble.data.loaders import load_dataset
    from recsemble.evaluation.metrics import CatalogStats, compute_metrics
    from recsemble.evaluation.protocol import prepare, temporal_user_split
    from recsemble.ranking.ids import Catalog
    from recsemble.ranking.persistence import save_model
    from recsemble.ranking.training import fit_model
    from recsemble.spark.batch import score_locally

    config = RecsembleConfig()
    rec = Recorder("local", size, Sampler())
    with rec.stage("read+prepare+split"):
        prepared = prepare(load_dataset(folder), min_user_interactions=5)
        split = temporal_user_split(prepared, 0.2)
    fitted = {}
    for name in members:
        with rec.stage(f"fit {name}"):
            fitted[name] = fit_model(config, name, split.train)
    if scored == "none":
        return rec.rows
    model_dir = save_model(fitted[scored], work / "model", Catalog.from_dataset(split.train))
    with rec.stage(f"batch scoring ({scored})"):
        table = score_locally(split.train.external_interactions(), model_dir, k=K)
    with rec.stage("evaluation (metrics@10)"):
        users = split.evaluated_users
        top = np.full((split.train.n_users, K), -1, np.int64)
        u = split.train.users.to_idx(table.column("user").to_pylist())
        i = split.train.items.to_idx(table.column("item").to_pylist())
        top[u, np.asarray(table.column("rank")) - 1] = i
        pop = np.bincount(
            split.train.column("item_idx"), minlength=split.train.n_items
        )  # interactions per item (prepared: one per user and item)
        stats = CatalogStats(pop.astype(np.int64), split.train.n_users, split.train.n_items)
        truth = split.test.user_item_matrix("binary")[users]
        result = compute_metrics(top[users], truth, K, stats)
    rec.rows[-1].note = f"ndcg@10={float(np.nanmean(result.ndcg)):.4f}"
    return rec.rows


# ---------------------------------------------------------------------------- report
def _format(row: Row) -> str:
    p = row.peaks
    memory = f"driver {p.driver:7.0f} MB"
    if row.engine == "spark":
        memory += f" | JVM {p.jvm:6.0f} MB (heap {p.heap:5.0f}) | py workers {p.workers:6.0f} MB"
    return f"{row.engine:5} {row.size:>3} {row.stage:28} {row.seconds:8.1f} s  {memory}  {row.note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,5m")
    parser.add_argument("--engines", default="spark,local")
    parser.add_argument("--members", default=",".join(MEMBERS), help="members to fit")
    parser.add_argument(
        "--scored", default=SCORED, help="the member whose lists are scored ('none': no scoring)"
    )
    args = parser.parse_args()
    if args.scored != "none" and args.scored not in args.members.split(","):
        parser.error(f"--scored {args.scored!r} must be one of --members or 'none'")
    rows: list[Row] = []
    for size in args.sizes.split(","):
        start = time.perf_counter()
        folder = synthetic(size)
        print(f"# {size}: data at {folder} ({time.perf_counter() - start:.1f} s)", flush=True)
        for engine in args.engines.split(","):
            work = OUT / f"work-{engine}-{size}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            runner = run_spark if engine == "spark" else run_local
            members = args.members.split(",")
            rows += runner(folder, size, work, members, args.scored)
    print("\n## bench_spark (" + " ".join(["benchmarks/bench_spark.py", *sys.argv[1:]]) + ")")
    for row in rows:
        print(_format(row))
    dump = [{**row.__dict__, "peaks": row.peaks.__dict__} for row in rows]
    (OUT / f"results-{args.sizes.replace(',', '-')}.json").write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
