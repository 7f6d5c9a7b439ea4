"""The `recsemble` command line: thin commands over the library."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from recsemble import config as cfg
from recsemble.cli_analyze import analyze as analyze_command
from recsemble.cli_batch import batch as batch_command
from recsemble.cli_batch import load_recs as load_recs_command
from recsemble.cli_demo import demo as demo_command
from recsemble.cli_evaluate import evaluate as evaluate_command
from recsemble.cli_options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    check_not_inputs,
    check_outputs,
    data_paths,
)
from recsemble.cli_report import report as report_command
from recsemble.cli_serve import serve as serve_command
from recsemble.cli_tables import comparison_table
from recsemble.cli_train import recommend as recommend_command
from recsemble.cli_train import train as train_command
from recsemble.errors import ConfigError, DataError, RecsembleError

app = typer.Typer(help="recsemble: an ensemble recommender engine.", no_args_is_help=True)
data_app = typer.Typer(help="Generate and inspect data.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.command("analyze")(analyze_command)  # body in cli_analyze.py
app.command("train")(train_command)  # body in cli_train.py
app.command("recommend")(recommend_command)
app.command("evaluate")(evaluate_command)  # body in cli_evaluate.py
app.command("serve")(serve_command)  # body in cli_serve.py
app.command("report")(report_command)  # body in cli_report.py
app.command("demo")(demo_command)  # body in cli_demo.py
app.command("batch")(batch_command)  # body in cli_batch.py
app.command("load-recs")(load_recs_command)

console = Console()
if not console.is_terminal:
    console = Console(width=160)  # pipes and CI logs: wide enough for the metrics table
err_console = Console(stderr=True)


def say(text: str, *, err: bool = False) -> None:
    """Print plain text: paths, names and ids with [brackets] or :colons: are not markup."""
    (err_console if err else console).print(text, markup=False, emoji=False)


def log(text: str) -> None:
    """A library's progress message (it names the user's dataset) on stderr, as plain text."""
    say(text, err=True)


@contextmanager
def _errors_exit() -> Iterator[None]:
    """Known errors become one clear line and exit code 2, not a traceback."""
    try:
        yield
    except (RecsembleError, KeyError) as exc:
        text = str(exc)
        if isinstance(exc, KeyError):  # ours say what is unknown; a bare key is a bug's
            said = exc.args[0] if exc.args else ""
            plain = isinstance(said, str) and " " in said
            text = said if plain else f"internal error: KeyError {text} (please report it)"
        # The message is text, not markup: "[models.x]" and ":b:" must print as written.
        err_console.print(f"[bold red]error:[/] {escape(text)}", emoji=False)
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def _resolve(
    config_path: Path | None, sets: Sequence[str] | None, **flags: Any
) -> cfg.ResolvedConfig:
    overrides = dict(cfg.parse_override(s) for s in sets or [])
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return cfg.resolve(config_path, overrides)


def _split_csv(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _ks(values: list[str] | None) -> list[int] | None:
    if not values:
        return None
    try:
        return sorted({int(part) for value in values for part in value.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--k takes integers, got {values}") from None


@app.command()
def compare(
    results_paths: Annotated[
        list[Path],
        typer.Argument(
            help="results.json written by `evaluate --json`; several runs on the same split "
            "are compared as one (a model in more than one is named <file>:<model>).",
            show_default=False,
        ),
    ],
    baseline: Annotated[
        str, typer.Option(help="Model to compare every other model against.")
    ] = "pop",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="Metric(s), e.g. ndcg@10 (default: ndcg, recall, hit at the first k).",
            show_default=False,
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(min=10, help="Bootstrap resamples of users.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Paired per-user differences against a baseline: 95% bootstrap CI and p-values, per slice."""
    from recsemble.evaluation.files import compare_results, merge_runs, uncompared_slices

    with _errors_exit():
        results = merge_runs(results_paths)
        metrics = metric or _default_metrics(results)
        comparison = compare_results(results, baseline, metrics, n_resamples=resamples, seed=seed)
        if not comparison:
            raise DataError(
                f"nothing to compare: it holds only the baseline {baseline!r}",
                source=", ".join(map(str, results_paths)),
            )
        for name, by_metric in comparison.items():
            for metric_name, by_slice in by_metric.items():
                left_out = uncompared_slices(results, name, baseline, metric_name)
                console.print(comparison_table(name, baseline, metric_name, by_slice, left_out))


def _default_metrics(results: dict[str, Any]) -> list[str]:
    first = next(iter(results.values()))
    ks = sorted({int(key.split("@")[1]) for key in first if key.startswith("ndcg@")})
    k = ks[0] if ks else 10
    return [f"ndcg@{k}", f"recall@{k}", f"hit@{k}"]


@app.command()
def tune(
    dataset: Annotated[
        str | None, typer.Option(help="A dataset name or a path.", show_default=False)
    ] = None,
    data_dir: DataDirOpt = None,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated models (default: evaluate.models).", show_default=False),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials per model.")] = 20,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1, help="Seconds per model (stops after the running trial).", show_default=False
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="Validation metric to maximize.")] = "ndcg@10",
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    min_gain_se: Annotated[
        float,
        typer.Option(
            min=0,
            help="Keep the base config unless the best trial's paired gain over it exceeds "
            "this many standard errors (0: always take the best).",
        ),
    ] = 1.0,
    out: Annotated[
        Path | None,
        typer.Option(help="TOML to write (default: configs/<dataset>.toml).", show_default=False),
    ] = None,
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Tune models' hyper-parameters on the validation window; write a config for `evaluate`."""
    from recsemble.evaluation.search_spaces import tunable
    from recsemble.evaluation.tuning import tune as run_tune
    from recsemble.evaluation.tuning import write_config

    with _errors_exit():
        check_outputs({"--out": out})
        data = {"data.dataset": dataset, "data.data_dir": str(data_dir) if data_dir else None}
        resolved = _resolve(config_path, sets, **data, **{"evaluate.models": _split_csv(models)})
        config = resolved.config
        # --models says what to tune, not what the experiment evaluates: the written file
        # keeps the configured [evaluate] models (the tuned ones are added to them).
        experiment = _resolve(config_path, sets, **data).config if models else config
        target = out or Path("configs") / f"{Path(config.data.dataset).name}.toml"
        check_not_inputs({"--out": target}, data_paths(config.data))
        command = _tune_command(
            dataset,
            data_dir,
            models,
            trials,
            timeout,
            metric,
            seed,
            min_gain_se,
            target,
            config_path,
            sets,
        )
        with _progress_with_best() as bar:
            tasks: dict[str, TaskID] = {}

            def on_trial(name: str, done: int, total: int, best: float) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"tune {name}", total=total, best="-")
                bar.update(tasks[name], completed=done, best=f"{best:.4f}")

            report = run_tune(
                config,
                # Without --models: the configured models that have a search space.
                config.evaluate.models if models else tunable(config.evaluate.models),
                n_trials=trials,
                timeout=timeout,
                metric=metric,
                seed=seed,
                on_trial=on_trial,
                log=log,
                min_gain_se=min_gain_se,
            )
        path = write_config(target, experiment, report, command)
        for name, result in report.results.items():
            kept = " (base kept: the best trial's gain was within the noise)"
            note = kept if result.kept_base else ""
            say(f"{name}: validation {metric} {result.value:.4f}{note} {result.params}")
        say(f"tuned config written to {path}")


def _progress_with_best() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=err_console,
    )


def _tune_command(*values: Any) -> str:
    """The command line that reproduces a tune run (for the written file's header)."""
    import shlex

    dataset, data_dir, models, trials, timeout, metric, seed, min_gain_se, out = values[:9]
    config_path, sets = values[9:]
    parts = ["recsemble", "tune"]
    for flag, value in (
        ("--config", config_path),
        ("--dataset", dataset),
        ("--data-dir", data_dir),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if models is not None:
        parts += ["--models", models]
    parts += ["--trials", str(trials)]
    if timeout is not None:
        parts += ["--timeout", f"{timeout:g}"]
    parts += ["--metric", metric, "--seed", str(seed), "--min-gain-se", f"{min_gain_se:g}"]
    parts += ["--out", str(out)]
    for item in sets or []:
        parts += ["--set", item]
    return shlex.join(parts)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write interactions/items/users files to.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    users: Annotated[int, typer.Option(min=10, help="Number of users.")] = 5_000,
    items: Annotated[int, typer.Option(min=10, help="Number of items.")] = 2_000,
    interactions: Annotated[
        int, typer.Option(min=100, help="Target number of interactions.")
    ] = 200_000,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Generate the deterministic synthetic demo dataset."""
    from pydantic import ValidationError

    from recsemble.data.synthetic import SyntheticConfig, write_synthetic

    with _errors_exit():
        if fmt not in ("parquet", "csv"):
            raise ConfigError(f"--format must be parquet or csv, got {fmt!r}")
        check_outputs(folders={"--out": out})
        try:
            config = SyntheticConfig(
                seed=seed, n_users=users, n_items=items, n_interactions=interactions
            )
        except ValidationError as exc:  # e.g. fewer items than the categories need
            messages = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise ConfigError(f"synthetic data: {messages}") from None
        with err_console.status(f"generating {interactions:,} interactions"):
            paths = write_synthetic(out, config, fmt=fmt)  # type: ignore[arg-type]
        for path in paths:
            say(f"wrote {path}")


@data_app.command("describe")
def data_describe(
    dataset: Annotated[str, typer.Argument(help="A dataset name or a path.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Counts, sparsity, time range and the history-length distribution of a dataset."""
    from recsemble.data.describe import describe, format_description
    from recsemble.data.loaders import load_dataset

    with _errors_exit():
        with err_console.status(f"loading {escape(dataset)}"):
            loaded = load_dataset(dataset, data_dir=data_dir)
        say(format_description(describe(loaded)))  # names its dataset and events


@config_app.command("show")
def config_show(config_path: ConfigOpt = None, sets: SetOpt = None) -> None:
    """Print the resolved configuration and where each value came from."""
    with _errors_exit():
        resolved = _resolve(config_path, sets)
        table = Table(title="recsemble configuration")
        table.add_column("key")
        table.add_column("value")
        table.add_column("source", no_wrap=True)  # a file path stays readable in one piece
        for key, value, source in resolved.rows():
            table.add_row(escape(key), escape(repr(value)), escape(source))
        console.print(table)


def main() -> None:
    app()
