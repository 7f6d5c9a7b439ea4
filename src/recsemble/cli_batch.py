"""`recsemble batch` (every user's list from a saved model, as Parquet) and `recsemble
load-recs` (such lists into the serving store, the precomputed cache the API serves first).

Registered on the main app by cli.py; the work is in spark/batch.py and store/precomputed.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recsemble.cli_options import ConfigOpt, DataDirOpt, SetOpt
from recsemble.spark.batch import USERS_PER_PARTITION, BatchRun
from recsemble.spark.commands import EngineOpt


def batch(
    model_dir: Annotated[
        Path, typer.Option("--model", help="Folder written by `recsemble train`.")
    ],
    out: Annotated[Path, typer.Option("--output", help="Parquet folder to write the lists to.")],
    dataset: Annotated[
        str | None,
        typer.Option(help="The users' interactions: a dataset name or path.", show_default=False),
    ] = None,
    data_dir: DataDirOpt = None,
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="The users' interactions as Parquet (a folder with interactions.parquet; with "
            "--engine spark also a folder of part files).",
            show_default=False,
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items per user.")] = 10,
    users_per_partition: Annotated[
        int, typer.Option(min=1, help="With --engine spark: users per Spark task.")
    ] = USERS_PER_PARTITION,
    engine: EngineOpt = "local",
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Every user's top-k (with explanations) from the whole pipeline of a saved model, the
    list the API would answer for them, written as Parquet (user, rank, item, score,
    explanation, history_events, history_latest)."""
    from recsemble.cli import _errors_exit, _resolve, console
    from recsemble.errors import ConfigError, DataError
    from recsemble.spark.batch import run_batch
    from recsemble.spark.commands import ENGINES
    from recsemble.store.precomputed import MODEL_STAMP, write_model_stamp

    with _errors_exit():
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
        if dataset is not None and input_path is not None:
            raise ConfigError("give the interactions once: --dataset or --input")
        data_flags = {"data.dataset": dataset, "data.data_dir": str(data_dir) if data_dir else None}
        resolved = _resolve(config_path, sets, **data_flags)
        if input_path is None and "data.dataset" not in resolved.sources:
            raise ConfigError(  # the default dataset is the demo's: never the user's users
                "batch needs the users' interactions: --dataset, --input or [data] dataset"
            )
        config = resolved.config
        # The stamp names the model of the lists beside it: never an earlier run's model
        # beside this run's lists, nor beside an earlier run's lists when this one fails.
        if out.is_dir():
            (out / MODEL_STAMP).unlink(missing_ok=True)
        run = _scored_with_progress(
            partial(
                run_batch,
                config,
                model_dir,
                out,
                engine=engine,
                input_path=input_path,
                k=k,
                users_per_partition=users_per_partition,
            ),
            f"scoring every user with {escape(str(model_dir))}",  # a progress line is markup
            spark=engine == "spark",
        )
        write_model_stamp(out, model_dir)
        table = Table(title=f"batch lists ({engine})", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        table.add_row("users in the input", f"{run.users:,}")
        table.add_row("users scored", f"{run.scored:,} (the others are unknown to the model)")
        table.add_row("rows", f"{run.rows:,}")
        table.add_row("wall time", f"{run.seconds:.1f} s")
        table.add_row("written to", escape(str(run.out)))
        console.print(table)
        if run.users and not run.scored:
            raise DataError(
                f"none of the {run.users:,} users in the input is known to the model: are "
                "these the ids it was trained with?",
                source=str(model_dir),
            )


def _scored_with_progress(run: Callable[..., BatchRun], what: str, *, spark: bool) -> BatchRun:
    """run() under a progress bar of users scored (a spinner on Spark, which shows its own)."""
    from recsemble.cli import _progress, err_console

    if spark:
        with err_console.status(f"{what} (spark)"):
            return run()
    with _progress() as bar:
        task = bar.add_task(what, total=None)
        return run(on_progress=lambda done, total: bar.update(task, completed=done, total=total))


def load_recs(
    input_path: Annotated[
        Path, typer.Option("--input", help="Parquet lists written by `recsemble batch`.")
    ],
    model_version: Annotated[
        str, typer.Option(help="The registry version the lists were computed with.")
    ],
    store_url: Annotated[
        str, typer.Option("--store", help="sqlite:///path.db or postgresql://...")
    ] = "sqlite:///out/serve/store.db",
) -> None:
    """Load batch lists into the serving store as the version's precomputed cache (replacing
    its previous one atomically); the API serves them first while a user's history is
    unchanged."""
    from recsemble.cli import _errors_exit, say
    from recsemble.errors import RecsembleError
    from recsemble.store import open_store
    from recsemble.store.precomputed import batch_rerank, check_version, read_chunks

    with _errors_exit():
        rerank = batch_rerank(input_path)  # a bad file is refused before the store is opened
        check_version(input_path, model_version)
        try:
            store = open_store(store_url)
        except ConnectionError as exc:  # an unreachable PostgreSQL: one line, as serve says it
            raise RecsembleError(f"--store: {exc}") from None
        try:
            info = store.replace_precomputed(model_version, read_chunks(input_path), rerank)
        finally:
            store.close()
        say(  # the version is the user's text
            f"loaded {info.rows:,} rows ({info.users:,} users, k={info.k}) as the precomputed "
            f"lists of {model_version}"
        )
