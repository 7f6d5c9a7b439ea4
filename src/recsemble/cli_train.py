"""`recsemble train` and `recsemble recommend`: fit a model on all the data, save it, ask it.

Registered on the main app by cli.py; the shared helpers (config resolution, progress display,
error handling) are read from there when a command runs, which keeps imports one-way. The
work itself is in ranking/training.py (fit) and ranking/persistence.py (save, load, ids).
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recsemble.cli_options import ConfigOpt, DataDirOpt, SetOpt
from recsemble.spark.commands import EngineOpt, InputOpt

#: Set by a server for the training child of POST /admin/train: exit when the server is gone.
EXIT_WITH_PARENT = "RECSEMBLE_EXIT_WITH_PARENT"

if TYPE_CHECKING:
    from recsemble.config import RecsembleConfig
    from recsemble.ranking.ensemble import Ensemble
    from recsemble.ranking.ids import IdRecommendation
    from recsemble.ranking.persistence import Model


def train(
    dataset: Annotated[
        str | None, typer.Option(help="A dataset name or a path.", show_default=False)
    ] = None,
    data_dir: DataDirOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="'ensemble' (the default), or one generator's name to train alone.",
            show_default=False,
        ),
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option(
            "--like",
            help="A saved model to train again: its kind, \\[ensemble] and \\[models.*] settings "
            "(the config's data settings still apply).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the trained model to.")] = Path(
        "out/model"
    ),
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
    engine: EngineOpt = "local",
    input_path: InputOpt = None,
) -> None:
    """Fit the configured model on the whole data set (no test split) and save it."""
    from recsemble.cli import _errors_exit, _resolve, console
    from recsemble.ranking.model_folder import check_model_folder
    from recsemble.ranking.training import check_model_name
    from recsemble.spark.commands import train_spark_and_save, use_spark

    _exit_with_parent()
    with _errors_exit():
        check_model_folder(out)
        on_spark = use_spark(engine, input_path)
        data_flags = {"data.dataset": dataset, "data.data_dir": str(data_dir) if data_dir else None}
        config = _resolve(config_path, sets, **data_flags).config
        if like is not None:
            config, model = _like(config, like, model)
        model = model or "ensemble"
        check_model_name(model)
        if on_spark:
            console.print(train_spark_and_save(config, model, out, input_path))
        else:
            console.print(train_and_save(config, model, out))


def _exit_with_parent() -> None:
    """A server's training child ends when the server does, however it ended (kill -9, the
    OOM killer), instead of training on for no one: its stdin is a pipe the server holds
    open, which reads end-of-file once the server is gone."""
    if os.environ.get(EXIT_WITH_PARENT) != "1":
        return

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked holding stdin's buffer lock makes
        # the interpreter's shutdown abort (exit -6) once the training is done.
        while os.read(0, 4096):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _like(config: RecsembleConfig, folder: Path, model: str | None) -> tuple[RecsembleConfig, str]:
    """The config with the saved model's settings in place of its own, and the model's kind."""
    from recsemble.config import RecsembleConfig
    from recsemble.errors import ConfigError
    from recsemble.ranking.persistence import saved_settings

    saved = saved_settings(folder)
    if model is not None and model != saved.model:
        raise ConfigError(f"--model {model} but --like {folder} is a saved {saved.model}")
    values = config.model_dump()
    values["models"] = {**values["models"], **saved.models}
    if values["data"]["event_weights"] is None and saved.event_weights:
        values["data"]["event_weights"] = saved.event_weights  # its event types weigh the same
    if saved.ensemble is not None:
        values["ensemble"] = saved.ensemble.model_dump()
    return RecsembleConfig.model_validate(values), saved.model


def train_and_save(config: RecsembleConfig, model: str, out: Path) -> Table:
    """Load the configured data, fit `model` on all of it with a progress bar, save it to
    `out`; returns the summary table (also used by `recsemble demo`)."""
    from recsemble.cli import _progress, err_console, say
    from recsemble.evaluation.workflow import load_training_data
    from recsemble.ranking.ids import Catalog
    from recsemble.ranking.persistence import save_model
    from recsemble.ranking.training import fit_model, training_steps

    with err_console.status(escape(f"loading {config.data.dataset}")):
        prepared = load_training_data(config)
    say(f"{prepared!r}: training {model} on all of it", err=True)
    start = time.perf_counter()
    with _progress() as bar:
        steps = training_steps(config, model)
        task = bar.add_task(model, total=steps)
        fitted = fit_model(
            config,
            model,
            prepared,
            start=lambda text: bar.update(task, description=text),
            done=lambda: bar.advance(task),
        )
        # complete: early stopping (or a fit elsewhere) may use fewer steps than the bound
        bar.update(task, completed=steps, description=f"{model} fitted")
    fit_seconds = time.perf_counter() - start
    with err_console.status(escape(f"saving to {out}")):
        folder = save_model(fitted, out, Catalog.from_dataset(prepared))
    return _summary_table(fitted, fit_seconds, folder)


def _summary_table(model: Model, fit_seconds: float, folder: Path) -> Table:
    from recsemble.files import folder_size
    from recsemble.ranking.ensemble import Ensemble
    from recsemble.ranking.persistence import training_summary

    table = Table(title=escape(f"trained {model.name}"), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    if isinstance(model, Ensemble):
        for label, seconds in model.fit_seconds_.items():
            table.add_row(escape(f"member {label}"), f"fit {seconds:.2f} s (refit on all data)")
        training = training_summary(model) or {}
        table.add_row(
            "ranker training",
            f"{training.get('pairs', 0):,} pairs, {training.get('positives', 0):,} positives, "
            f"{training.get('requests', 0):,} requests",
        )
        rounds = getattr(model.ranker_, "rounds_", None)
        kind = model.ranker_.kind_ + (f", {rounds} rounds" if rounds else "")
        table.add_row("ranker", kind)
        for label, line in _validation_lines(model):
            table.add_row(label, line)
    table.add_row("fit wall time", f"{fit_seconds:.1f} s")
    table.add_row("saved to", escape(str(folder)))
    table.add_row("size on disk", f"{folder_size(folder) / 1e6:.1f} MB")
    return table


def _validation_lines(ens: Ensemble) -> list[tuple[str, str]]:
    """Per history slice of the validation requests: the ranker's NDCG@10 (scored out of
    fold) beside the best member's alone, so a ranker that adds nothing shows at once."""
    board = getattr(ens, "slice_board_", None)
    if board is None:
        return []
    rows = []
    for name, scores in board.ndcg.items():
        members = {k: v for k, v in scores.items() if k != "ranker" and v == v}  # not NaN
        ranker = scores.get("ranker", math.nan)
        if not members or ranker != ranker:
            continue
        best = max(members, key=lambda k: members[k])
        label = f"validation {name} ({board.users.get(name, 0):,})"
        rows.append((label, f"NDCG@10 ranker {ranker:.4f}, best member {best} {members[best]:.4f}"))
    return rows


def recommend(
    user: Annotated[
        list[str], typer.Option("--user", help="External user id (repeatable).", show_default=False)
    ],
    model_dir: Annotated[
        Path, typer.Option("--model", help="Folder written by `recsemble train`.")
    ] = Path("out/model"),
    k: Annotated[int, typer.Option("--k", min=1, help="Items per user.")] = 10,
    include_seen: Annotated[
        bool, typer.Option(help="Allow items the user already interacted with.")
    ] = False,
) -> None:
    """Top-k items of a trained model for the given users, with external ids (and titles)."""
    from recsemble.cli import _errors_exit, console, say
    from recsemble.ranking.persistence import load_model, recommend_ids

    with _errors_exit():
        _check_user_ids(user)
        start = time.perf_counter()
        loaded = load_model(model_dir)
        say(f"loaded {model_dir} in {time.perf_counter() - start:.2f} s", err=True)
        for answer in recommend_ids(loaded, user, k, exclude_seen=not include_seen):
            if answer.item_ids or answer.known:
                console.print(_answer_table(answer, k))
            else:  # a lone generator's contract: no answer, not a guess
                console.print(
                    escape(f"user {answer.user_id}: {loaded.model.name} has no answer for a user "
                           "it never saw (an ensemble, or `recsemble serve`, falls back to "
                           "popularity)"), soft_wrap=True
                )  # fmt: skip


def _check_user_ids(users: list[str]) -> None:
    """An id no data file can hold (" 1") would get a cold-start answer, not the user's."""
    from recsemble.data.tables import id_problem
    from recsemble.errors import ConfigError

    for user in users:
        if (problem := id_problem(user)) is not None:
            raise ConfigError(f"--user {problem}, so no model knows it")


def _answer_table(answer: IdRecommendation, k: int) -> Table:
    note = "" if answer.known else " (unknown user: cold-start answer)"
    short = len(answer.item_ids) < k
    caption = (
        f"{len(answer.item_ids)} of {k} asked: the model has no more items to offer"
        if short
        else None
    )
    table = Table(title=escape(f"user {answer.user_id}{note}"), caption=caption)
    table.add_column("rank", justify="right")
    table.add_column("item")
    if answer.titles is not None:
        table.add_column("title")
    table.add_column("score", justify="right")
    for rank, item in enumerate(answer.item_ids):
        title = [answer.titles[rank] or ""] if answer.titles is not None else []
        cells = [escape(str(rank + 1)), escape(item), *map(escape, title)]
        table.add_row(*cells, f"{answer.scores[rank]:.4f}")
    return table
