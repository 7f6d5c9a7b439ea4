"""RecBole 1.2.1 on the benchmark split (out/peers/recbole-venv); see peer_io.py.

General models (EASE, ItemKNN, MultiVAE, SimpleX): the split goes in as RecBole atomic files through
`benchmark_filename`. Only the train file holds real rows: the valid and test parts RecBole
insists on get a copy of each user's last train row, so no test interaction ever reaches the
library; lists come from the model's `full_sort_predict` with the user's train items masked here.
MultiVAE and SimpleX train a fixed number of epochs without validation (there is no held-out
part to stop on; `--params '{"epochs": N}'` runs another count). RecBole's Pop is left out: it
under-counts (issue #2198).

SimpleX (Mao et al., CIKM 2021) stands beside recsemble's `twotower`: the nearest two-tower model
RecBole has, a user tower pooling the embeddings of the user's latest `history_len` train items
(mean, mixed with a user-id embedding) against an item-id tower, cosine scores, a contrastive loss
over sampled negatives. Unlike recsemble's member it reads no item content, weights no position
and samples uniform negatives instead of in-batch ones with a logQ correction.

SASRec (sequential): RecBole builds its (history -> next item) rows itself only without
`benchmark_filename`, so the train rows go in as one file plus, per user, a dummy item stamped
after all of them, split by RecBole's own leave-one-out (`LS: valid_and_test`, order TO): the
dummy is the test target, whose history is the user's whole train sequence (last
MAX_ITEM_LIST_LENGTH items); the user's last train item is the valid target for RecBole's early
stopping (best epoch kept) and is only history, never a target, in training — RecBole's own
protocol. The sequences scored are built here from the train rows and checked to equal RecBole's
test-part histories. Events at equal timestamps keep the train file's order (RecBole sorts
stably), an arbitrary order of simultaneous events, like any other library's.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable
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

# RecBole's defaults, except EASE's lambda (recsemble's default, in the reference range),
# MultiVAE's epoch count (fixed, since nothing is held out for early stopping) and SASRec's
# training length. SASRec's model settings are RecBole's defaults, repeated so the report shows
# them; it early-stops on NDCG@10 (the benchmark's metric) instead of MRR@10. RecBole encodes
# every (prefix -> next item) row on its own, ~50x the work of one pass over each sequence:
# ~4.5 min per ml-100k epoch on 2 busy CPU cores, so it gets 4 epochs (the best one kept)
# with batches of 256 (8x RecBole's default steps per epoch) to fit the benchmark's run limit.
PARAMS: dict[str, dict[str, Any]] = {
    "ease": {"reg_weight": 300.0},
    "itemknn": {"k": 100, "shrink": 0.0},
    "multivae": {"epochs": 50},
    # RecBole's SimpleX defaults with 100 uniform negatives per positive (the default of 1
    # leaves the contrastive loss nothing to contrast); RecBole divides train_batch_size by them,
    # so batches hold 512 positives.
    "simplex": {
        "embedding_size": 64,
        "margin": 0.5,
        "negative_weight": 10,
        "gamma": 0.5,
        "aggregator": "mean",
        "history_len": 50,
        "learning_rate": 0.001,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 100},
        "train_batch_size": 51_200,
        "epochs": 30,
    },
    "sasrec": {
        "hidden_size": 64,
        "n_layers": 2,
        "n_heads": 2,
        "inner_size": 256,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "loss_type": "CE",
        "MAX_ITEM_LIST_LENGTH": 50,
        "learning_rate": 0.001,
        "train_batch_size": 256,
        "epochs": 4,
        "stopping_step": 10,
        "valid_metric": "NDCG@10",
    },
}
MODEL_NAMES = {
    "ease": "EASE",
    "itemknn": "ItemKNN",
    "multivae": "MultiVAE",
    "simplex": "SimpleX",
    "sasrec": "SASRec",
}
SEQUENTIAL = {"sasrec"}
_DUMMY_ITEM = "__next__"  # the test target that makes RecBole's test history the whole train
_BATCH = 256


def _user_order(split: peer_io.PeerSplit) -> np.ndarray:
    """Train rows by user, then time; ties keep the train file's order (lexsort is stable)."""
    return np.lexsort((split.timestamp, split.u))


def _write_rows(path: Path, rows: list[tuple[str, str, int]]) -> None:
    with path.open("w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        fh.writelines(f"{user}\t{item}\t{ts}\n" for user, item, ts in rows)


def _train_rows(split: peer_io.PeerSplit, order: np.ndarray) -> list[tuple[str, str, int]]:
    return [
        (split.user_ids[split.u[r]], split.item_ids[split.i[r]], int(split.timestamp[r]))
        for r in order
    ]


def _write_atomic(split: peer_io.PeerSplit, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = _user_order(split)
    last = rows[np.r_[split.u[rows][1:] != split.u[rows][:-1], True]]
    for part, idx in (("train", rows), ("valid", last), ("test", last)):
        _write_rows(folder / f"bench.{part}.inter", _train_rows(split, idx))


def _write_sequences(split: peer_io.PeerSplit, folder: Path) -> None:
    """All train rows, each user's followed by the dummy item after every real timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _train_rows(split, _user_order(split))
    after = int(split.timestamp.max()) + 1
    with_dummies = []
    for n, row in enumerate(rows):
        with_dummies.append(row)
        if n + 1 == len(rows) or rows[n + 1][0] != row[0]:
            with_dummies.append((row[0], _DUMMY_ITEM, after))
    _write_rows(folder / "bench.inter", with_dummies)


def _params(model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """PARAMS[model] with the --params overrides; a key the model does not take is an error."""
    unknown = sorted(set(overrides) - set(PARAMS[model]))
    if unknown:
        raise SystemExit(f"--params: {model} takes {sorted(PARAMS[model])}, not {unknown}")
    return PARAMS[model] | overrides


def _config(model: str, params: dict[str, Any], data_path: Path, work: Path) -> Config:
    settings = {
        "data_path": str(data_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "checkpoint_dir": str(work / "saved"),
        "log_wandb": False,
        "eval_step": 0,
        "seed": 0,
        # RecBole edits nested settings in place (it fills train_neg_sample_args' defaults).
        **copy.deepcopy(params),
    }
    if model in SEQUENTIAL:
        settings["eval_args"]["split"] = {"LS": "valid_and_test"}
        settings |= {"eval_step": 1, "train_neg_sample_args": None, "topk": [10]}
    else:
        settings["benchmark_filename"] = ["train", "valid", "test"]
    return Config(model=MODEL_NAMES[model], dataset="bench", config_dict=settings)


def _train_sequences(split: peer_io.PeerSplit, dataset: Any, max_len: int) -> dict[str, Any]:
    """Every evaluated user's last `max_len` train items in RecBole's inner ids, oldest first.

    Laid out as RecBole's own histories: item_id_list (users, max_len) left-aligned, 0-padded,
    and item_length.
    """
    order = _user_order(split)
    users = split.u[order]
    starts = np.searchsorted(users, split.eval_users)
    ends = np.searchsorted(users, split.eval_users, side="right")
    inner = dataset.token2id(dataset.iid_field, list(split.item_ids[split.i[order]]))
    seqs = np.zeros((split.eval_users.size, max_len), dtype=np.int64)
    lengths = np.minimum(ends - starts, max_len)
    for row, (end, length) in enumerate(zip(ends, lengths, strict=True)):
        seqs[row, :length] = inner[end - length : end]
    return {
        "uid": dataset.token2id(dataset.uid_field, list(split.user_ids[split.eval_users])),
        dataset.item_id_list_field: torch.as_tensor(seqs),
        dataset.item_list_length_field: torch.as_tensor(lengths.astype(np.int64)),
    }


def _check_test_histories(sequences: dict[str, Any], test_part: Any) -> None:
    """RecBole's own test-part histories (dummy targets) must be the sequences scored here."""
    feat = test_part.inter_feat
    position = {int(u): n for n, u in enumerate(feat[test_part.uid_field].numpy())}
    missing = [u for u in sequences["uid"] if int(u) not in position]
    if missing:
        raise SystemExit(f"{len(missing)} evaluated users have no RecBole test row")
    rows = torch.as_tensor([position[int(u)] for u in sequences["uid"]])
    dummy = test_part.token2id(test_part.iid_field, _DUMMY_ITEM)
    if not bool((feat[test_part.iid_field][rows] == dummy).all()):
        raise SystemExit("RecBole's test targets are not the dummy items")
    for field in (test_part.item_id_list_field, test_part.item_list_length_field):
        if not torch.equal(feat[field][rows], sequences[field]):
            raise SystemExit(f"RecBole's test histories differ from the train sequences ({field})")


def _fit(config: Config, model: Any, train_data: Any, valid_data: Any) -> dict[str, Any]:
    """Train; with valid data, RecBole early-stops on it and the best epoch's state is kept."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    progress: dict[str, Any] = {"epochs_run": 0}

    def after_epoch(epoch: int, score: float) -> None:
        progress["epochs_run"] = epoch + 1
        print(f"epoch {epoch + 1}: valid {config['valid_metric']} {score:.4f}", flush=True)
        if trainer.cur_step == 0:  # RecBole's early_stopping just took this epoch as its best
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            progress.update(best_epoch=epoch + 1, valid_ndcg=score, state=state)

    trainer.fit(train_data, valid_data, saved=False, show_progress=False, callback_fn=after_epoch)
    if "state" not in progress:  # no validation: the last epoch's state stays
        return {}
    model.load_state_dict(progress.pop("state"))
    return progress


def _recommend(
    model: Any,
    split: peer_io.PeerSplit,
    inputs: Callable[[slice], Interaction],
    k: int,
    banned: list[int],
    seen_inner: np.ndarray,
) -> np.ndarray:
    """(eval users, k) inner item ids; train items and the `banned` inner ids excluded."""
    indptr = split.matrix().indptr
    out = []
    model.eval()
    with torch.no_grad():
        for lo in range(0, split.eval_users.size, _BATCH):
            codes = split.eval_users[lo : lo + _BATCH]
            scores = model.full_sort_predict(inputs(slice(lo, lo + codes.size)))
            scores = scores.view(codes.size, -1)
            scores[:, banned] = -torch.inf
            for r, code in enumerate(codes):
                scores[r, seen_inner[indptr[code] : indptr[code + 1]]] = -torch.inf
            out.append(torch.topk(scores, k, dim=1).indices.numpy())
    return np.concatenate(out)


def _prepare(
    model_name: str, params: dict[str, Any], split: peer_io.PeerSplit, work: Path
) -> tuple[Config, Any, tuple]:
    """RecBole's config, dataset and (train, valid, test) loaders for the split."""
    if model_name in SEQUENTIAL:
        _write_sequences(split, work / "data" / "bench")
    else:
        _write_atomic(split, work / "data" / "bench")
    config = _config(model_name, params, work / "data", work)
    init_seed(config["seed"], config["reproducibility"])
    logging.disable(logging.INFO)
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def _model_inputs(
    model_name: str, split: peer_io.PeerSplit, dataset: Any, loaders: tuple, config: Config
) -> tuple[Callable[[slice], Interaction], list[int]]:
    """What full_sort_predict gets for a slice of the evaluated users; inner items never listed."""
    if model_name not in SEQUENTIAL:
        uid = dataset.token2id(dataset.uid_field, list(split.user_ids[split.eval_users]))
        return (lambda rows: Interaction({dataset.uid_field: torch.as_tensor(uid[rows])})), [0]
    sequences = _train_sequences(split, dataset, config["MAX_ITEM_LIST_LENGTH"])
    _check_test_histories(sequences, loaders[2].dataset)
    fields = [dataset.item_id_list_field, dataset.item_list_length_field]
    dummy = int(dataset.token2id(dataset.iid_field, _DUMMY_ITEM))
    return (lambda rows: Interaction({f: sequences[f][rows] for f in fields})), [0, dummy]


def main() -> None:
    args = peer_io.parse_args(list(PARAMS), takes_params=True)
    params = _params(args.model, args.params)
    split = peer_io.read_split(args.split)
    timer = peer_io.Timer()
    with tempfile.TemporaryDirectory() as tmp:
        config, dataset, loaders = _prepare(args.model, params, split, Path(tmp))
        train_data, valid_data, _ = loaders
        with timer.phase("fit"):
            # EASE and ItemKNN do all their work in the constructor; the others train here.
            model = get_model(config["model"])(config, train_data.dataset).to("cpu")
            sequential = args.model in SEQUENTIAL
            stopping = _fit(config, model, train_data, valid_data if sequential else None)
        with timer.phase("recommend"):
            inputs, banned = _model_inputs(args.model, split, dataset, loaders, config)
            seen = dataset.token2id(dataset.iid_field, list(split.item_ids[split.matrix().indices]))
            top = _recommend(model, split, inputs, args.k, banned, seen)
            items = dataset.id2token(dataset.iid_field, top)
    peer_io.write_recs(args.out, split.user_ids[split.eval_users], items)
    peer_io.emit(timer, recbole.__version__, params, **stopping)


if __name__ == "__main__":
    main()
