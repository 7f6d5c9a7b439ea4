"""`recsemble evaluate`: models (and their re-ranked variants) under the offline protocol.

Registered on the main app by cli.py; the shared helpers (config resolution, progress display,
error handling) are read from there when the command runs, which keeps imports one-way. The
work itself is in evaluation/workflow.py and, for re-ranking sweeps, evaluation/sweep.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import TaskID

from recsemble.cli_options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    check_not_inputs,
    check_outputs,
    data_paths,
)
from recsemble.cli_tables import metrics_table, sweep_table
from recsemble.spark.commands import EngineOpt, InputOpt

if TYPE_CHECKING:
    from recsemble.config import RecsembleConfig
    from recsemble.evaluation.workflow import EvaluationOutcome


def evaluate(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="ml-100k, ml-latest-small, ml-1m, ml-20m, ml-25m, synthetic, or a path.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    protocol: Annotated[
        str | None, typer.Option(help="temporal-user or temporal-global.", show_default=False)
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated model names.", show_default=False)
    ] = None,
    k: Annotated[
        list[str] | None,
        typer.Option(
            "--k", help="Cut-off(s), e.g. --k 10 --k 20 or --k 10,20.", show_default=False
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write results.json here.", show_default=False)
    ] = None,
    dump: Annotated[
        Path | None,
        typer.Option(help="Write train/test/recs CSVs (external ids) here.", show_default=False),
    ] = None,
    rerank: Annotated[
        str | None,
        typer.Option(
            help="Re-ranking stages applied in order to each model, e.g. diverse or mmr,fair "
            "(seen, available, rules, quality, fresh, boost, calibrated, mmr, dpp, cap, fair, "
            "explore, diverse); reported as <model>+<stages>.",
            show_default=False,
        ),
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="Sweep a re-ranking knob, e.g. rerank.mmr.lambda=0:1:0.1 (repeatable): prints "
            "and plots NDCG against ILD, coverage, novelty, calibration KL and exposure Gini.",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Where the sweep plot goes (default: <json name>.sweep.png beside --json, "
            "else ./sweep.png).",
            show_default=False,
        ),
    ] = None,
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
    engine: EngineOpt = "local",
    input_path: InputOpt = None,
) -> None:
    """Evaluate models under the offline protocol; the popularity baseline is always included."""
    from recsemble.cli import _errors_exit, _ks, _resolve, _split_csv, console, say
    from recsemble.spark.commands import evaluate_on_spark, use_spark

    with _errors_exit():
        check_outputs({"--json": json_out, "--plot": plot}, {"--dump": dump})
        on_spark = use_spark(engine, input_path)
        resolved = _resolve(
            config_path,
            sets,
            **{
                "data.dataset": dataset,
                "data.data_dir": str(data_dir) if data_dir else None,
                "protocol.name": protocol,
                "evaluate.models": _split_csv(models),
                "protocol.k": _ks(k),
                "evaluate.rerank": _split_csv(rerank),
                "evaluate.sweep": sweep or None,
            },
        )
        outputs = {"--json": json_out, "--plot": plot, "--dump": dump}
        check_not_inputs(outputs, data_paths(resolved.config.data, input_path))
        if on_spark:
            outcome = evaluate_on_spark(resolved.config, input_path)
        else:
            outcome = evaluate_with_progress(resolved.config)
        for cutoff in resolved.config.protocol.k:
            console.print(metrics_table(outcome.results, cutoff))
        if json_out is not None:
            outcome.write_json(json_out)
            say(f"results written to {json_out}")
        if resolved.config.evaluate.sweep:
            default_plot = json_out.with_suffix(".sweep.png") if json_out else Path("sweep.png")
            _report_sweeps(resolved.config, outcome.results, plot or default_plot)
        if dump is not None:
            paths = outcome.write_dump(dump)
            say(f"split and lists written to {dump}/ ({len(paths)} files)")


def evaluate_with_progress(config: RecsembleConfig) -> EvaluationOutcome:
    """run_evaluation with a progress bar per model and stage (also used by `recsemble demo`)."""
    from recsemble.cli import _progress, log
    from recsemble.evaluation.workflow import run_evaluation

    with _progress() as bar:
        tasks: dict[tuple[str, str], TaskID] = {}

        def on_progress(name: str, stage: str, done: int, total: int) -> None:
            key = (name, stage)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{stage:9s} {escape(name)}", total=total)
            bar.update(tasks[key], completed=done, total=total)

        return run_evaluation(config, on_progress, log=log)


def _report_sweeps(config: RecsembleConfig, results: dict[str, Any], plot: Path) -> None:
    from recsemble.cli import console, say
    from recsemble.evaluation.sweep import parse_sweep, plot_sweeps, sweep_rows

    k = config.protocol.k[0]
    curves = {}
    swept = config.evaluate.rerank_models or config.evaluate.models
    for text in config.evaluate.sweep:
        sweep = parse_sweep(text, config.rerank)
        for model in swept:
            rows = sweep_rows(results, model, sweep, config.evaluate.rerank, k)
            console.print(sweep_table(model, sweep.stage, sweep.key, rows, results[model], k))
            curves[f"{model} {sweep.stage}.{sweep.key}"] = rows
    plain = {m: {"ndcg": results[m][f"ndcg@{k}"], **_trade_offs(results[m], k)} for m in swept}
    say(f"sweep plot written to {plot_sweeps(curves, plain, k, plot)}")


def _trade_offs(entry: dict[str, Any], k: int) -> dict[str, float]:
    from recsemble.evaluation.sweep import TRADE_OFF_METRICS

    return {m: entry.get(f"{m}@{k}", float("nan")) for m in TRADE_OFF_METRICS}
