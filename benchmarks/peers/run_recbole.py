"""RecBole 1.2.1 on the benchmark split (out/peers/recbole-venv); see peer_io.py.

The split goes in as RecBole atomic files through `benchmark_filename`. Only the train file
holds real rows: the valid and test parts RecBole insists on get a copy of each user's last
train row, so no test interaction ever reaches the library; lists come from the model's
`full_sort_predict` with the user's train items masked here. MultiVAE trains a fixed number of
epochs without validation (there is no held-out part to stop on). RecBole's Pop is left out: it
under-counts (issue #2198).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import peer_io
import recbole
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_seed

# RecBole's defaults, except EASE's lambda (recsemble's default, in the reference range) and
# MultiVAE's epoch count (fixed, since nothing is held out for early stopping).
PARAMS: dict[str, dict[str, Any]] = {
    "ease": {"reg_weight": 300.0},
    "itemknn": {"k": 100, "shrink": 0.0},
    "multivae": {"epochs": 50},
}
MODEL_NAMES = {"ease": "EASE", "itemknn": "ItemKNN", "multivae": "MultiVAE"}
_BATCH = 256


def _write_atomic(split: peer_io.PeerSplit, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    rows = np.lexsort((split.timestamp, split.u))
    last = rows[np.r_[split.u[rows][1:] != split.u[rows][:-1], True]]
    for part, idx in (("train", rows), ("valid", last), ("test", last)):
        with (folder / f"bench.{part}.inter").open("w") as fh:
            fh.write(header)
            fh.writelines(
                f"{split.user_ids[split.u[r]]}\t{split.item_ids[split.i[r]]}\t{split.timestamp[r]}\n"
                for r in idx
            )


def _config(model: str, data_path: Path, work: Path) -> Config:
    settings = {
        "data_path": str(data_path),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "checkpoint_dir": str(work / "saved"),
        "log_wandb": False,
        "eval_step": 0,
        "seed": 0,
        **PARAMS[model],
    }
    return Config(model=MODEL_NAMES[model], dataset="bench", config_dict=settings)


def _recommend(model: Any, dataset: Any, split: peer_io.PeerSplit, k: int) -> np.ndarray:
    """(eval users, k) external item ids, train items excluded."""
    users = split.user_ids[split.eval_users]
    inner = dataset.token2id(dataset.uid_field, list(users))
    matrix = split.matrix()
    seen_inner = dataset.token2id(dataset.iid_field, list(split.item_ids[matrix.indices]))
    indptr = matrix.indptr
    out = np.full((users.size, k), None, dtype=object)
    model.eval()
    with torch.no_grad():
        for lo in range(0, users.size, _BATCH):
            uid = torch.as_tensor(inner[lo : lo + _BATCH])
            scores = model.full_sort_predict(Interaction({dataset.uid_field: uid}))
            scores = scores.view(uid.numel(), -1)
            scores[:, 0] = -torch.inf  # RecBole's padding item
            for r, code in enumerate(split.eval_users[lo : lo + _BATCH]):
                scores[r, seen_inner[indptr[code] : indptr[code + 1]]] = -torch.inf
            top = torch.topk(scores, k, dim=1).indices.numpy()
            out[lo : lo + uid.numel()] = dataset.id2token(dataset.iid_field, top)
    return out


def main() -> None:
    args = peer_io.parse_args(list(PARAMS))
    split = peer_io.read_split(args.split)
    timer = peer_io.Timer()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write_atomic(split, work / "data" / "bench")
        config = _config(args.model, work / "data", work)
        init_seed(config["seed"], config["reproducibility"])
        logging.disable(logging.INFO)
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        with timer.phase("fit"):
            # EASE and ItemKNN do all their work in the constructor; MultiVAE trains here.
            model = get_model(config["model"])(config, train_data.dataset).to("cpu")
            trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
            trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
        with timer.phase("recommend"):
            items = _recommend(model, dataset, split, args.k)
    peer_io.write_recs(args.out, split.user_ids[split.eval_users], items)
    peer_io.emit(timer, recbole.__version__, PARAMS[args.model])


if __name__ == "__main__":
    main()
