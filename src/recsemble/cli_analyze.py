"""`recsemble analyze`: how alike the ensemble's members are, what each adds, which can go.

Registered on the main app by cli.py; the shared helpers (config resolution, progress display,
error handling) are read from there when the command runs, which keeps imports one-way.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.markup import escape
from rich.table import Table

from recsemble.cli_options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    check_not_inputs,
    check_outputs,
    data_paths,
)
from recsemble.config import RecsembleConfig

if TYPE_CHECKING:
    from recsemble.ranking.analysis import EnsembleAnalysis


def analyze(
    dataset: Annotated[
        str | None,
        typer.Option(help="A dataset name (e.g. ml-100k) or a path.", show_default=False),
    ] = None,
    data_dir: DataDirOpt = None,
    protocol: Annotated[
        str | None, typer.Option(help="temporal-user or temporal-global.", show_default=False)
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            min=1,
            help="List length of every measure (default: the config's first protocol.k, 10).",
            show_default=False,
        ),
    ] = None,
    ranker_rounds: Annotated[
        int,
        typer.Option(min=1, help="Boosting rounds of the rankers refitted for the analysis."),
    ] = 50,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the analysis here.", show_default=False)
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write the pruning curve as a PNG here.", show_default=False),
    ] = None,
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Analyse the ensemble: member overlap, score correlation, unique hits, leave-one-member-out
    and a forward selection curve (chosen on validation) that recommends a pruned member set."""
    from recsemble.cli import _errors_exit, _resolve, console, log, say

    start = time.perf_counter()
    with _errors_exit():
        check_outputs({"--json": json_out, "--plot": plot})
        resolved = _resolve(
            config_path,
            sets,
            **{
                "data.dataset": dataset,
                "data.data_dir": str(data_dir) if data_dir else None,
                "protocol.name": protocol,
                "protocol.k": None if k is None else [k],
            },
        )
        outputs = {"--json": json_out, "--plot": plot}
        check_not_inputs(outputs, data_paths(resolved.config.data))
        analysis, meta = _run(resolved.config, resolved.config.protocol.k[0], ranker_rounds, log)
        for table in analysis_tables(analysis):
            console.print(table)
        console.print("Put this in the config to serve the recommended set:")
        console.print(f"[ensemble]\n{analysis.prune_line}", markup=False, highlight=False)
        meta["total_seconds"] = time.perf_counter() - start
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            document = {"meta": meta, **analysis.to_json()}
            json_out.write_text(json.dumps(document, indent=2) + "\n")
            say(f"analysis written to {json_out}")
        if plot is not None:
            from recsemble.ranking.analysis import plot_curve

            plot_curve(analysis, plot)
            say(f"pruning curve plotted to {plot}")
        console.print(f"total runtime {meta['total_seconds']:.1f} s")


def _run(
    config: RecsembleConfig, k: int, ranker_rounds: int, log: Callable[[str], None]
) -> tuple[EnsembleAnalysis, dict[str, object]]:
    """Load and split as `evaluate` does, fit the ensemble on the train part, analyse it."""
    from rich.progress import TaskID

    from recsemble.cli import _progress
    from recsemble.evaluation.workflow import build_model, load_and_split
    from recsemble.ranking.analysis import analysis_ranker, analyze
    from recsemble.ranking.ensemble import Ensemble

    prepared, the_split = load_and_split(config)
    log(
        f"{prepared!r} -> {config.protocol.name}: {the_split.train.n_interactions:,} train, "
        f"{the_split.test.n_interactions:,} test, "
        f"{the_split.evaluated_users.size:,} users evaluated"
    )
    ens = build_model(config, "ensemble")
    assert isinstance(ens, Ensemble)
    with _progress() as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        on_progress("fit ensemble", 0, 1)
        fit_start = time.perf_counter()
        ens.fit(the_split.train)
        fit_seconds = time.perf_counter() - fit_start
        on_progress("fit ensemble", 1, 1)
        ranker = analysis_ranker(ens.config.ranker, ranker_rounds)
        analysis = analyze(ens, the_split, k=k, ranker=ranker, progress=on_progress)
    meta: dict[str, object] = {
        "dataset": config.data.dataset,
        "protocol": config.protocol.name,
        "n_users": int(the_split.evaluated_users.size),
        "fit_seconds": fit_seconds,
    }
    return analysis, meta


# -- tables ------------------------------------------------------------------------------------
def analysis_tables(a: EnsembleAnalysis) -> list[Table]:
    """Every table of the analysis, in reading order."""
    k = a.k
    return [
        matrix_table(f"Top-{k} overlap: mean Jaccard@{k}", a.members, a.overlap.jaccard),
        matrix_table(
            f"Top-{k} overlap: rank-biased overlap (p={a.rbo_p:g}, extrapolated)",
            a.members,
            a.overlap.rbo,
        ),
        matrix_table(
            "Score correlation: Spearman over the candidate union", a.members, a.overlap.correlation
        ),
        reach_table(a),
        leave_one_out_table(a),
        curve_table(a),
    ]


def matrix_table(title: str, members: Sequence[str], values: npt.NDArray[np.float64]) -> Table:
    table = Table(title=title)
    table.add_column("member")
    for member in members:  # labels are text: "itemknn[x]" is not markup
        table.add_column(escape(member), justify="right")
    for member, row in zip(members, values, strict=True):
        table.add_row(escape(member), *(_fmt(v, 2) for v in row))
    return table


def reach_table(a: EnsembleAnalysis) -> Table:
    k = a.k
    table = Table(
        title=f"What each member finds (test part): unique hits = test items in no other "
        f"member's top-{k}; candidate recall = share of test items in its top-N"
    )
    columns = [f"ndcg@{k} alone", f"hits@{k}", "unique hits", "unique share"]
    columns += ["candidate recall", "latency ms/user"]
    table.add_column("member")
    for column in columns:
        table.add_column(column, justify="right")
    for r in a.overlap.reach:
        share = r.unique_hits / r.hits if r.hits else math.nan
        recall, latency = _fmt(r.candidate_recall, 3), _fmt(a.latency_ms[r.member], 3)
        hits = [str(r.hits), str(r.unique_hits), _fmt(share, 3)]
        table.add_row(escape(r.member), _fmt(r.ndcg, 4), *hits, recall, latency)
    total = _fmt(sum(a.latency_ms.values()), 3)
    table.add_row("union", "", "", "", "", _fmt(a.overlap.union_recall, 3), total, style="bold")
    return table


def leave_one_out_table(a: EnsembleAnalysis) -> Table:
    k = a.k
    slices = list(a.slices)
    table = Table(
        title=f"Leave one member out: ΔNDCG@{k} per history slice (ranker retrained without "
        f"it, members not refitted; < 0: the member helps)"
    )
    table.add_column("")
    for name in slices:
        table.add_column(f"{name} ({a.slices[name]})", justify="right")
    table.add_row("ensemble as fitted", *(_fmt(a.ensemble_ndcg[s], 4) for s in slices))
    table.add_row("all members (analysis ranker)", *(_fmt(a.baseline_ndcg[s], 4) for s in slices))
    for member in a.leave_one_out:
        delta = a.loo_delta(member)
        table.add_row(escape(f"- {member}"), *(_signed(delta[s]) for s in slices))
    return table


def curve_table(a: EnsembleAnalysis) -> Table:
    k = a.k
    rounds = a.ranker.max_rounds
    table = Table(
        title=f"Forward selection, chosen on validation (2 user folds, ranker {rounds} rounds; "
        f"gain: paired over validation requests); test NDCG for information only"
    )
    columns = ["step", "added", f"validation ndcg@{k}", "gain ± SE", f"test ndcg@{k}"]
    for column in [*columns, "latency ms/user"]:
        table.add_column(column, justify="left" if column == "added" else "right")
    for i, point in enumerate(a.curve, start=1):
        chosen = point.step.members == a.recommended
        table.add_row(
            str(i),
            escape(point.step.added + ("  <- recommended" if chosen else "")),
            _fmt(point.step.validation_ndcg, 4),
            _gain(point.step.gain, point.step.gain_se),
            _fmt(point.test_ndcg, 4),
            _fmt(point.latency_ms, 3),
            style="bold green" if chosen else None,
        )
    return table


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _gain(gain: float, se: float) -> str:
    return f"{gain:+.4f} ± {se:.4f}" if math.isfinite(gain) and math.isfinite(se) else "-"


def _signed(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    colour = "red" if value < 0 else "green" if value > 0 else "white"
    return f"[{colour}]{value:+.4f}[/]"
