"""Candidate generators side by side with peer libraries on the same split (issue 3).

For each dataset: one temporal-user split made by recsemble (prepare + split), written as
train/test CSV with external ids so that every peer trains on exactly the same rows. Each run,
recsemble's or a peer's, is a fresh child process (its peak memory is its own max RSS, read with
wait4); it writes its top-k lists as CSV (user,item,rank) and this script scores every list
with recsemble's metric code. Fit and recommend-all times are measured inside the child:
fit = the model's training on data already in the library's own structures; recommend-all =
top-k over the full catalog, train items excluded, for every evaluated user.

    python benchmarks/bench_generators.py [--datasets ml-100k,ml-latest-small]
        [--models pop,itemknn,...] [--peers implicit,lenskit,recbole,rectools|none]
        [--variant userknn:neighbourhood=item] [--peer-variant recbole:simplex:epochs=60]
        [--repeat 5] [--configs both|default|tuned|none]
        [--data-dir ../shared/datasets]
        [--json out/bench-generators.json]

Peers other than implicit run from their own virtualenvs under out/peers/, made (once) by
benchmarks/peers/setup.sh, which this script calls when one is missing (unless --no-setup).
Which peer model stands beside which member is benchmarks/peers/plan.py; a model with a tuned
config also gets a "matched" implicit row with that config's settings, so that the tuned row's
time is compared with the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
sys.path.insert(0, str(PEERS_DIR))

from plan import PEER_MODELS, Run, parse_variant, peer_runs, peer_variants  # noqa: E402  (benchmarks/peers/plan.py)

import report  # noqa: E402  (benchmarks/peers/report.py)

K = 10
DEFAULT_MODELS = (
    "pop,pop-trending,itemknn,itemknn-recent,userknn,ials,bpr,ease,ease-recent,content,covisit"
)


# -- the recsemble child -------------------------------------------------------------------
def _build_split(dataset: str, data_dir: Path) -> Any:
    from recsemble.data import load_dataset
    from recsemble.evaluation import prepare, split

    return split(prepare(load_dataset(dataset, data_dir=data_dir)), "temporal-user")


def _child(spec: dict[str, Any]) -> None:
    """Fit one recsemble generator, rank for every evaluated user, write the lists as CSV."""
    import numpy as np
    import polars as pl

    from recsemble.evaluation.runner import recommend_for_split
    from recsemble.generators import GENERATORS

    the_split = _build_split(spec["dataset"], Path(spec["data_dir"]))
    # The split is rebuilt here (it is deterministic); check it is the one the peers got.
    sizes = [the_split.train.n_interactions, the_split.test.n_interactions]
    if sizes != spec["expect"]:
        raise SystemExit(f"split differs from the parent's: {sizes} vs {spec['expect']}")
    kind = GENERATORS[spec["model"]]
    model = kind(kind.Config.model_validate(spec["config"]))
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    users = the_split.evaluated_users
    start = time.perf_counter()
    model.fit(the_split.train)
    fitted = time.perf_counter()
    top = recommend_for_split(model, the_split, users, K)
    ranked = time.perf_counter()
    rows, cols = np.nonzero(top.items >= 0)
    pl.DataFrame(
        {
            "user": pl.Series(the_split.train.users.to_ids(users[rows]), dtype=pl.String),
            "item": pl.Series(the_split.train.items.to_ids(top.items[rows, cols]), dtype=pl.String),
            "rank": cols + 1,
        }
    ).write_csv(spec["out"])
    result = {"fit_s": fitted - start, "recommend_s": ranked - fitted, "base_mb": base_mb}
    print("RESULT " + json.dumps(result), flush=True)


# -- running children ----------------------------------------------------------------------
def _execute(run: Run, timeout_s: float) -> None:
    """Start the child, wait for it (wait4: its own peak RSS), fill in its row."""
    log = run.out.with_suffix(".log")
    with log.open("w") as fh:
        proc = subprocess.Popen(run.command, stdout=fh, stderr=subprocess.STDOUT, cwd=run.cwd)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").splitlines()
    results = [line for line in lines if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        tail = [line.strip() for line in lines if line.strip()][-1:] or ["no output"]
        why = "timed out" if proc.returncode == -9 else f"exit {proc.returncode}"
        run.row.error = f"{why}: {tail[0][:160]} (log: {log.relative_to(ROOT)})"
        return
    result = json.loads(results[-1].removeprefix("RESULT "))
    run.row.repeats.append((result["fit_s"], result["recommend_s"]))
    run.row.take_median_repeat()
    run.row.peak_mb = max(run.row.peak_mb or 0.0, usage.ru_maxrss / 1024)  # Linux: KiB
    if len(run.row.repeats) > 1:
        return  # what the run says of itself was read from the first repeat
    if "epochs_run" in result:
        run.row.notes.append(f"epochs run {result['epochs_run']}, best {result['best_epoch']}")
    if "params" in result:
        params = ",".join(f"{k}={v}" for k, v in result["params"].items())
        run.row.config = f"{run.row.config}: {params or 'defaults'}"
        run.row.library = f"{run.row.library} {result['version']}"
    run.row.base_mb = result.get("base_mb")


def _score(run: Run, the_split: Any) -> None:
    if run.row.error is not None:
        return
    lists, warnings = report.read_lists(run.out, the_split, K)
    run.row.lists = lists
    run.row.metrics, run.row.user_ndcg = report.score(lists, the_split, K)
    run.row.notes.extend(warnings)


# -- planning ------------------------------------------------------------------------------
def _tuned_configs(dataset: str, models: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Tuned config per model from configs/<dataset>.toml (validated through recsemble.config)."""
    path = ROOT / "configs" / f"{dataset}.toml"
    if not path.exists():
        return {}, f"no {path.relative_to(ROOT)}: default configs only"
    from recsemble.config import resolve

    config = resolve(path).config
    out = {}
    for name in models:
        if name in config.models:
            out[name] = config.model_config_for(name).model_dump(mode="json")
    return out, f"tuned configs from {path.relative_to(ROOT)} for {sorted(out)}"


def _variants(specs: list[str]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """--variant MODEL:key=value[,key=value]: extra rows of a model with those settings."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for spec in specs:
        model, settings, config = parse_variant(spec, "--variant")
        out.setdefault(model, []).append((settings, config))
    return out


def _recsemble_runs(
    dataset: str,
    data_dir: Path,
    models: list[str],
    expect: list[int],
    work: Path,
    tuned: dict[str, dict[str, Any]],
    variants: dict[str, list[tuple[str, dict[str, Any]]]] | None = None,
    configs: str = "both",
) -> list[Run]:
    from recsemble.generators import GENERATORS

    runs = []
    for name in models:
        # --configs tuned skips the default row of a model that has a tuned config.
        # --configs none runs the peers of the named models only.
        default = configs in {"both", "default"} or (configs == "tuned" and name not in tuned)
        for label, config in [
            *([("default", {})] if default else []),
            *([("tuned", tuned[name])] if name in tuned and configs in {"both", "tuned"} else []),
            *(variants or {}).get(name, []),
        ]:
            out = work / f"recsemble-{name}-{label}.csv"
            spec: dict[str, Any] = {"dataset": dataset, "data_dir": str(data_dir), "model": name}
            spec |= {"config": config, "expect": expect, "out": str(out)}
            command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
            row = report.Row(name, "recsemble", label)
            if name not in GENERATORS:
                row.error = f"no recsemble generator named {name!r}"
            runs.append(Run(row, command, out, ROOT))
    return runs


# -- one dataset ---------------------------------------------------------------------------
def bench_dataset(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    from recsemble.evaluation.files import _interactions_csv

    work = ROOT / "out" / "bench-generators" / dataset
    split_dir = work / "split"
    split_dir.mkdir(parents=True, exist_ok=True)
    the_split = _build_split(dataset, args.data_dir)
    _interactions_csv(the_split.train, split_dir / "train.csv")
    _interactions_csv(the_split.test, split_dir / "test.csv")
    expect = [the_split.train.n_interactions, the_split.test.n_interactions]
    users = the_split.evaluated_users.size
    print(
        f"[{dataset}] split: {expect[0]:,} train / {expect[1]:,} test rows, {users} users, "
        f"{the_split.train.n_items:,} items -> {split_dir.relative_to(ROOT)}",
        flush=True,
    )
    try:
        tuned, tuned_note = _tuned_configs(dataset, args.models)
    except Exception as exc:  # a broken tuned file must not stop the default rows
        tuned, tuned_note = {}, f"tuned configs unavailable: {exc}"
    print(f"[{dataset}] {tuned_note}", flush=True)
    runs = _recsemble_runs(
        dataset,
        args.data_dir,
        args.models,
        expect,
        work,
        tuned,
        _variants(args.variant),
        args.configs,
    )
    matched = {} if args.configs == "default" else tuned  # no tuned rows: nothing to match
    extra = peer_variants(args.peer_variant)
    runs += peer_runs(args.peers, args.models, split_dir, work, args.setup, matched, K, extra)
    # Repeats go round every run in turn, so a change in the machine's load touches all alike;
    # each row keeps the repeat with the median time (sub-second fits vary by 2x between runs).
    for repeat in range(1, args.repeat + 1):
        for i, run in enumerate(runs, 1):
            if run.row.error is None:
                _execute(run, args.timeout)
                if repeat == 1:
                    _score(run, the_split)
            elapsed = time.perf_counter() - args.start
            step = f"{i}/{len(runs)}" + (
                f" (repeat {repeat}/{args.repeat})" if args.repeat > 1 else ""
            )
            print(f"[{dataset} {elapsed:4.0f}s] {step} {_status(run.row)}", flush=True)
    return {
        "dataset": dataset,
        "tuned": tuned_note,
        "rows": [r.row for r in runs],
        "users": users,
        "items": the_split.train.n_items,
        "train": expect[0],
        "test": expect[1],
        "repeat": args.repeat,
    }


def _mb_range(values: list[float]) -> str:
    low, high = f"{min(values):.0f}", f"{max(values):.0f}"
    return low if low == high else f"{low}-{high}"


def _status(row: report.Row) -> str:
    head = f"{row.library} {row.model} ({row.config}):"
    if row.error is not None:
        return f"{head} unavailable: {row.error}"
    return (
        f"{head} NDCG {row.metrics['ndcg']:.4f}  fit {row.fit_s:.2f}s  "
        f"rec {row.recommend_s:.2f}s  peak {row.peak_mb:.0f} MB"
    )


def print_report(result: dict[str, Any], command: str) -> dict[str, Any]:
    rows: list[report.Row] = result["rows"]
    print(
        f"\n### {result['dataset']}: {result['users']} users, {result['items']:,} items, "
        f"{result['train']:,} train / {result['test']:,} test interactions\n"
    )
    print(f"{result['tuned']}\n")
    if result["repeat"] > 1:
        print(f"fit / recommend-all: the repeat with the median total of {result['repeat']}\n")
    print("\n".join(report.results_table(rows, K)))
    comps = report.comparisons(rows)
    print(
        "\nrecsemble vs peer, same model (time = fit + recommend-all; NDCG difference paired "
        "per user: 95% bootstrap CI, t-test p):\n"
    )
    print("\n".join(report.comparison_table(comps)) if comps else "(no peer ran these models)")
    # The ensemble uses each member's tuned config where there is one.
    members: dict[str, report.Row] = {}
    for r in rows:
        ours = r.library == "recsemble" and r.lists is not None
        if ours and (r.model not in members or r.config == "tuned"):
            members[r.model] = r
    names = [n + ("*" if r.config == "tuned" else "") for n, r in members.items()]
    matrix = report.jaccard_matrix([r.lists for r in members.values()])  # type: ignore[misc]
    print(
        f"\nJaccard overlap of the members' top-{K} lists (mean over users; "
        "* = tuned config, else default):\n"
    )
    print("\n".join(report.jaccard_table(names, matrix)))
    base = [r.base_mb for r in rows if r.base_mb is not None]
    notes = [f"- {r.library} {r.model} ({r.config}): {'; '.join(r.notes)}" for r in rows if r.notes]
    if base:
        notes.insert(
            0,
            f"- recsemble processes held {_mb_range(base)} MB after "
            "imports and data, before fit (included in their peak)",
        )
    print("\nnotes:\n" + "\n".join(notes or ["- none"]))
    print(f"\ncommand: {command}")
    return {
        **{k: v for k, v in result.items() if k != "rows"},
        "rows": [r.to_json() for r in rows],
        "comparisons": comps,
        "jaccard": {"models": names, "matrix": matrix.round(4).tolist()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--peers", default="implicit,lenskit,recbole", help="or 'none'")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--json", type=Path, default=Path("out/bench-generators.json"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument(
        "--configs",
        choices=["both", "default", "tuned", "none"],
        default="both",
        help="recsemble rows: default and tuned configs, one of them (tuned: default "
        "where a model has no tuned config), or none (the peers only)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every model this many times; times are the median repeat's",
    )
    parser.add_argument(
        "--no-setup",
        dest="setup",
        action="store_false",
        help="do not run benchmarks/peers/setup.sh for a missing peer venv",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="MODEL:key=value[,key=value]: an extra row of MODEL with those settings",
    )
    parser.add_argument(
        "--peer-variant",
        action="append",
        default=[],
        help="PEER:MODEL:key=value[,key=value]: an extra row of a peer's model with those "
        "parameters on top of its script's own (implicit and recbole read them)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return 0
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    args.models = [m for m in args.models.split(",") if m]
    _variants(args.variant)  # a malformed --variant fails before any split is written
    peer_variants(args.peer_variant)
    args.peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    unknown = [p for p in args.peers if p not in PEER_MODELS]
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {sorted(PEER_MODELS)}")
    args.data_dir = args.data_dir.resolve()
    command = ("python benchmarks/bench_generators.py " + shlex.join(sys.argv[1:])).strip()
    args.start, load_before = time.perf_counter(), os.getloadavg()[0]
    results = [bench_dataset(d, args) for d in args.datasets.split(",") if d]
    saved = [print_report(r, command) for r in results]
    # Timings are only comparable on an otherwise idle machine: say how busy it was.
    load = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(
        f"\ntotal {time.perf_counter() - args.start:.0f} s on {load['cpus']} cores, load average "
        f"{load['before']:.1f} before / {load['after']:.1f} after"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": command, "k": K, "load_average": load, "datasets": saved}
    args.json.write_text(json.dumps(document, indent=1))
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
