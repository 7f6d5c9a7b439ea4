"""The `--engine spark` branches of `recsemble train` and `recsemble evaluate`.

cli_train.py and cli_evaluate.py declare the options (defined here, one help text) and call
these functions; pyspark is imported only once a Spark run is asked for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsemble.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from recsemble.config import RecsembleConfig
    from recsemble.evaluation.workflow import EvaluationOutcome

ENGINES = ("local", "spark")
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: this process. spark: data preparation, split, fits (and metrics) on "
        "Apache Spark in local mode (pip install 'recsemble\\[spark]'; needs Java 17+).",
    ),
]
InputOpt = Annotated[
    Path | None,
    typer.Option(
        "--input",
        help="With --engine spark: Parquet (a file, a folder of part files, or a folder with "
        "interactions.parquet [+ items.parquet, users.parquet]) or a table, read by Spark.",
        show_default=False,
    ),
]


def use_spark(engine: str, input_path: Path | None = None) -> bool:
    """Whether the command runs on Spark; an unknown engine or a misplaced --input is an error."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if input_path is not None and engine != "spark":
        raise ConfigError("--input is read by Spark: add --engine spark (or use --dataset)")
    return engine == "spark"


def train_spark_and_save(
    config: RecsembleConfig, model: str, out: Path, input_path: Path | None
) -> Table:
    """Fit `model` on Spark and save it as an ordinary artifact; returns the summary table."""
    from rich.markup import escape
    from rich.table import Table

    from recsemble.cli import err_console, log
    from recsemble.files import folder_size
    from recsemble.ranking.ids import Catalog
    from recsemble.ranking.persistence import save_model
    from recsemble.spark.workflow import train_on_spark

    with err_console.status(f"training {model} on Spark"):
        trained = train_on_spark(config, model, input_path=input_path, log=log)
    with err_console.status(escape(f"saving to {out}")):
        start = time.perf_counter()
        folder = save_model(trained.model, out, Catalog.from_dataset(trained.catalog_data))
        save_seconds = time.perf_counter() - start
    table = Table(title=f"trained {model} on Spark", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("data", escape(trained.summary))
    table.add_row("fit wall time", f"{trained.fit_seconds:.1f} s (Spark, histories gathered)")
    table.add_row("save", f"{save_seconds:.1f} s")
    table.add_row("saved to", escape(str(folder)))
    table.add_row("size on disk", f"{folder_size(folder) / 1e6:.1f} MB")
    return table


def evaluate_on_spark(config: RecsembleConfig, input_path: Path | None) -> EvaluationOutcome:
    """run_spark_evaluation with its stages printed as they start."""
    from recsemble.cli import say
    from recsemble.spark.workflow import run_spark_evaluation

    start = time.perf_counter()

    def log(text: str) -> None:
        say(f"[{time.perf_counter() - start:6.1f} s] {text}", err=True)

    return run_spark_evaluation(config, input_path=input_path, log=log)
