"""RecTools 0.19 SASRec on the benchmark split (out/peers/rectools-venv); see peer_io.py.

RecTools' SASRec trains on each user's whole sequence at once (a causal transformer with a
softmax over the catalog), as the original paper and recsemble's sasrec do. Its model settings are
the library's defaults (2 blocks, 4 heads, 256 factors, dropout 0.2, sequences of the last 100
items, lr 1e-3, batches of 128, softmax loss); only the training length is set here: RecTools'
default of 3 epochs is far from converged, so it trains up to MAX_EPOCHS with RecTools' own
validation (each user's last train interaction held out as the target, its `get_val_mask_func`)
and stops `patience` epochs after the best validation loss, whose state is kept. "sasrec-matched"
runs the same with recsemble's settings where the two share a knob (MODELS). Lists come from
`recommend(..., filter_viewed=True)` over the whole train sequence of each evaluated user.
Events at equal timestamps keep the order RecTools gives them (an arbitrary order of simultaneous
events, like any other library's).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import pandas as pd
import peer_io
import rectools
import torch
from lightning_fabric import seed_everything
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import EarlyStopping
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel

MAX_EPOCHS = 200
SEED = 0
#: Per peer model: (early-stopping patience, SASRecModel settings). "sasrec" is the library's
#: defaults; "sasrec-matched" takes recsemble's configs/ml-100k.toml settings where RecTools has
#: the same knob (width 64, 2 blocks, 1 head, last 50 items, dropout 0.2, lr 2e-3, patience 20).
MODELS: dict[str, tuple[int, dict[str, Any]]] = {
    "sasrec": (10, {}),
    "sasrec-matched": (
        20,
        {
            "n_factors": 64,
            "n_blocks": 2,
            "n_heads": 1,
            "session_max_len": 50,
            "dropout_rate": 0.2,
            "lr": 0.002,
        },
    ),
}


def last_interaction_mask(interactions: pd.DataFrame) -> np.ndarray:
    """True on each user's last train interaction (by time; of tied rows, the first in the file)."""
    rank = interactions.groupby(Columns.User)[Columns.Datetime].rank(
        method="first", ascending=False
    )
    mask: np.ndarray = (rank == 1).to_numpy()
    return mask


class KeepBest(Callback):
    """Keeps the model's state at its best validation loss and restores it when training ends."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.epochs_run = 0

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is None or trainer.sanity_checking:
            return
        self.epochs_run = trainer.current_epoch + 1
        print(f"epoch {self.epochs_run}: val_loss {float(loss):.4f}", flush=True)
        if float(loss) < self.best:
            self.best, self.best_epoch = float(loss), self.epochs_run
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


def trainer(patience: int) -> Trainer:
    return Trainer(
        max_epochs=MAX_EPOCHS,
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        devices=1,
        accelerator="cpu",
        callbacks=[EarlyStopping("val_loss", patience=patience, mode="min"), KeepBest()],
    )


def _frame(split: peer_io.PeerSplit) -> pd.DataFrame:
    return pd.DataFrame(
        {
            Columns.User: split.user_ids[split.u],
            Columns.Item: split.item_ids[split.i],
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(split.timestamp, unit="s"),
        }
    )


def main() -> None:
    args = peer_io.parse_args(list(MODELS))
    patience, settings = MODELS[args.model]
    split = peer_io.read_split(args.split)
    seed_everything(SEED, workers=True)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    dataset = Dataset.construct(_frame(split))
    model = SASRecModel(
        deterministic=True,
        get_val_mask_func=last_interaction_mask,
        get_trainer_func=trainer,
        get_trainer_func_kwargs={"patience": patience},
        **settings,
    )
    timer = peer_io.Timer()
    with timer.phase("fit"):
        model.fit(dataset)
    users = split.user_ids[split.eval_users]
    with timer.phase("recommend"):
        recs = model.recommend(users=users, dataset=dataset, k=args.k, filter_viewed=True)
    items = np.full((users.size, args.k), None, dtype=object)
    row = pd.Index(users).get_indexer(recs[Columns.User])
    items[row, recs[Columns.Rank].to_numpy() - 1] = recs[Columns.Item].to_numpy()
    peer_io.write_recs(args.out, users, items)
    # RecTools fits a deep copy of the trainer: read the callback from that copy.
    assert model.fit_trainer is not None
    kept = next(c for c in model.fit_trainer.callbacks if isinstance(c, KeepBest))
    extra = {"epochs_run": kept.epochs_run, "best_epoch": kept.best_epoch}
    params = {**settings, "max_epochs": MAX_EPOCHS, "patience": patience, "monitor": "val_loss"}
    peer_io.emit(timer, rectools.__version__, params | {"seed": SEED}, **extra)


if __name__ == "__main__":
    main()
