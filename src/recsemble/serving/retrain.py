"""Retraining while serving: export what the served model knew plus what arrived since, train
in a separate process (`python -m recsemble train`), register, publish, hot swap.

The training data is the served version's own history (its saved histories with its id maps:
every interaction it was trained on, weights included) and the store's events after the
version's store cursor, so nothing is counted twice; items come from the store's catalog
(upserts, deletions) over the served version's item table. The new version records the store
cursor it includes. Training runs in a child process: a crash or a memory blow-up there never
takes the server down, and the served version keeps serving until the new one is ready.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recsemble.errors import RecsembleError
from recsemble.ranking.ids import ITEMS_FILE, USERS_FILE, read_json_object
from recsemble.ranking.persistence import saved_histories
from recsemble.recommender.items import flat_record, typed_rows
from recsemble.serving.state import ServingState
from recsemble.store.base import Event, Record

log = logging.getLogger("recsemble.serving")
_running: dict[str, threading.Thread] = {}
_child: dict[str, subprocess.Popen[bytes]] = {}  # the training process of the running job
_lock = threading.Lock()
_TRAIN_TIMEOUT_S = 3600


@dataclass(frozen=True)
class RetrainingStatus:
    """The latest retraining job, for GET /admin/models: a failure must not only be logged."""

    job: str
    state: Literal["running", "published", "failed"]
    started_at: int
    finished_at: int | None = None
    version: str | None = None
    error: str | None = None


_status: dict[str, RetrainingStatus] = {}


def retraining_status() -> RetrainingStatus | None:
    return _status.get("latest")


def start_retraining(state: ServingState) -> threading.Thread:
    """Start one background retraining; a second request while it runs is a conflict."""
    with _lock:
        current = _running.get("job")
        if current is not None and current.is_alive():
            raise RecsembleError(f"retraining {current.name} is still running")
        started = int(time.time())
        name = f"retrain-{started}"
        job = threading.Thread(target=_retrain_logged, args=(state,), name=name, daemon=True)
        _running["job"] = job
        _status["latest"] = RetrainingStatus(name, "running", started)
        job.start()
        return job


def _retrain_logged(state: ServingState) -> None:
    begun = _status["latest"]
    try:
        version = retrain(state)
        log.info("retrained and published %s", version)
        _status["latest"] = replace(begun, state="published", version=version)
    except Exception as exc:  # a background job: report, keep serving the current version
        log.error("retraining failed: %s", exc)
        _status["latest"] = replace(begun, state="failed", error=str(exc)[-2000:])
    _status["latest"] = replace(_status["latest"], finished_at=int(time.time()))


def retrain(state: ServingState) -> str:
    """Export, train in a child process, register, publish; returns the new version."""
    current = state.registry.current()
    if current is None:
        raise RecsembleError("nothing is published: there is no data to retrain from")
    cursor = state.cursor
    with tempfile.TemporaryDirectory(prefix="recsemble-retrain-") as tmp:
        data = export_training_data(state, current, cursor, Path(tmp) / "data")
        out = Path(tmp) / "model"
        command = train_command(state, current, data, out)
        returncode, stderr = _train(command)
        if returncode != 0:
            raise RecsembleError(f"training failed ({returncode}): {stderr[-2000:]}")
        version = state.registry.add(out, config={**_trained_to(state, cursor), "parent": current})
    state.publish(version)
    return version


def _trained_to(state: ServingState, cursor: int) -> dict[str, Any]:
    """What a retrained version records of the store: the seq it includes events to, the
    store's id, and the event at that seq (ServingState.start_cursor checks it)."""
    page = state.store.events_since(cursor - 1, 1) if cursor else []
    event = page[0].event.event_id if page and page[0].seq == cursor else None
    return {"store_cursor": cursor, "store_id": state.store.store_id(), "store_event": event}


def _train(command: list[str]) -> tuple[int, str]:
    """Run the training child, known to stop_retraining while it runs; (exit code, stderr).
    Its stdin stays an open pipe: when this server dies, even by kill -9, it reads
    end-of-file and exits (cli_train's EXIT_WITH_PARENT), so no training outlives it."""
    from recsemble.cli_train import EXIT_WITH_PARENT

    env = {**os.environ, EXIT_WITH_PARENT: "1"}
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env
        ) as child,
    ):
        _child["job"] = child
        try:
            child.wait(timeout=_TRAIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise RecsembleError(f"training ran past {_TRAIN_TIMEOUT_S} s: stopped") from None
        finally:
            _child.pop("job", None)
        errors.seek(0)
        return child.returncode, errors.read().decode(errors="replace")


def stop_retraining(timeout_s: float = 30.0) -> None:
    """Stop a running retraining (the server is shutting down): its child would go on as an
    orphan, training for no one for up to an hour, its temp folder left behind."""
    child = _child.get("job")
    if child is not None and child.poll() is None:
        child.terminate()
    job = _running.get("job")
    if job is not None and job.is_alive():
        job.join(timeout_s)  # it reports the failure and removes its temp folder


def train_command(state: ServingState, version: str, data: Path, out: Path) -> list[str]:
    """`recsemble train` on the exported data: with --train-config's settings when serve was
    given one, else with the served version's own (`--like`), never silently the defaults."""
    settings = state.settings.train_args or ["--like", str(state.registry.path(version))]
    weights = training_weights(state)
    if weights:  # the new version checks and weighs event types as this table says
        table = ", ".join(f"{json.dumps(name)} = {float(w)!r}" for name, w in weights.items())
        settings = [*settings, "--set", f"data.event_weights={{{table}}}"]
    return [sys.executable, "-m", "recsemble", "train", "--dataset", str(data),
            "--out", str(out), *settings]  # fmt: skip


def training_weights(state: ServingState) -> dict[str, float]:
    """The served version's event weight table with --train-config's [data] event_weights
    over it: a type added there is accepted once retrained (what the 409 for an unknown type
    advises; the served table alone undid it) and a changed weight weighs the exported store
    events; a type only the served table names stays, as the store holds events of it."""
    served = state.recommender.live.event_weights if state.recommender is not None else {}
    args = state.settings.train_args
    configured: dict[str, float] = {}
    if "--config" in args:  # read now, as the child will: the file may have changed
        from recsemble.config import resolve

        config = resolve(Path(args[args.index("--config") + 1])).config
        configured = config.data.event_weights or {}
    return {**served, **configured}


def export_training_data(state: ServingState, version: str, cursor: int, folder: Path) -> Path:
    """interactions.parquet (+ items.parquet) for `recsemble train --dataset folder`."""
    folder.mkdir(parents=True)
    model_dir = state.registry.path(version)
    frames = [_saved_interactions(model_dir)]
    start = state.start_cursor(version)
    rows = []
    while page := state.store.events_since(start, 10_000):
        rows += [s.event for s in page if s.seq <= cursor]
        start = page[-1].seq
        if start >= cursor:
            break
    if rows:
        frames.append(_event_frame(rows, _weights(state, rows)))
    interactions = pl.concat(frames)
    if interactions["value"].null_count() == interactions.height:  # implicit data: no ratings
        interactions = interactions.drop("value")
    interactions.write_parquet(folder / "interactions.parquet")
    for kind, name in (("item", ITEMS_FILE), ("user", USERS_FILE)):
        saved = (
            pl.read_parquet(model_dir / name, glob=False) if (model_dir / name).is_file() else None
        )
        table = _with_records(saved, state.store.changed_since(kind, 0), kind)
        if table is not None:
            table.write_parquet(folder / name)
    return folder


def _with_records(
    saved: pl.DataFrame | None, records: list[Record], kind: str
) -> pl.DataFrame | None:
    """The saved attribute table with the store's records over it (PUT /items, PUT /users):
    an upsert replaces its row or adds one, a deleted item stays (its events are still
    training data) but unavailable, a deleted user loses its attributes."""
    id_col = f"{kind}_id"
    if not records:
        return saved
    gone = [r.id for r in records if r.deleted]
    rows = [{**flat_record(r.attributes), id_col: r.id} for r in records if not r.deleted]
    replaced = {r.id for r in records}
    parts = [] if saved is None else [saved.filter(~pl.col(id_col).is_in(replaced))]
    if saved is not None and kind == "item" and gone:
        deleted = saved.filter(pl.col(id_col).is_in(gone)).with_columns(available=pl.lit(False))
        parts.append(deleted)
    if rows:  # in the saved table's types: a datetime column stays one, a number a number
        parts.append(typed_rows(rows, {} if saved is None else saved.schema))
    return pl.concat(parts, how="diagonal_relaxed") if parts else None


def _weights(state: ServingState, events: list[Event]) -> list[float]:
    """Each stored event's weight by its type, as the retrained model will weigh it online (a
    purchase must not come back from retraining as a view)."""
    table = training_weights(state)
    return [float(table.get(e.type, 1.0)) for e in events]


def _event_frame(events: list[Event], weights: list[float]) -> pl.DataFrame:
    """The store's events as interaction rows (their explicit values, e.g. ratings, kept)."""
    return pl.DataFrame(
        {
            "user_id": [e.user_id for e in events],
            "item_id": [e.item_id for e in events],
            "timestamp": [e.timestamp for e in events],
            "weight": weights,
            "value": [e.value for e in events],
        },
        schema=_SCHEMA,
    )


_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
           "weight": pl.Float32, "value": pl.Float32}  # fmt: skip


def _saved_interactions(model_dir: Path) -> pl.DataFrame:
    """Every interaction a saved model (an ensemble or a lone generator) was trained on, from
    its histories and id maps, with the explicit values (ratings) it kept."""
    ids = read_json_object(model_dir / "ids.json")
    histories, values = saved_histories(model_dir)
    user_ids = np.asarray(ids["users"], dtype=object)[histories.row_of_event]
    item_ids = np.asarray(ids["items"], dtype=object)[histories.items]
    value = pl.Series(values, dtype=pl.Float32).fill_nan(None) if values is not None else None
    return pl.DataFrame(
        {
            "user_id": user_ids.tolist(),
            "item_id": item_ids.tolist(),
            "timestamp": histories.timestamps,
            "weight": histories.weights,
            "value": value if value is not None else [None] * histories.items.size,
        },
        schema=_SCHEMA,
    )


def schedule_retraining(state: ServingState, every_s: float) -> threading.Event:
    """Retrain every `every_s` seconds in the background until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                start_retraining(state).join()
            except RecsembleError as exc:
                log.warning("scheduled retraining skipped: %s", exc)

    threading.Thread(target=loop, name="retrain-schedule", daemon=True).start()
    return stop
