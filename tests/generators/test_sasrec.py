from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, DataError
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.generators.sasrec import SASRec, last_items, shuffle_ties, training_windows

N_CYCLE = 20
#: Small and fast on the CPU; no dropout so that the cycle is learnt in few epochs.
TINY: dict[str, Any] = {
    "dim": 16,
    "max_len": 6,
    "dropout": 0.0,
    "lr": 0.01,
    "max_epochs": 40,
    "patience": 40,
    "device": "cpu",
}


def _cycle_data(n_users: int = 40, length: int = 10, seed: int = 0) -> Dataset:
    """Every user watches items in one fixed cycle c0 -> c1 -> ... -> c9 -> c0, from a random
    start: the next item is always known from the last one."""
    starts = np.random.default_rng(seed).integers(0, N_CYCLE, n_users)
    rows = [
        (f"u{u}", f"c{(start + step) % N_CYCLE}", 1000 * u + step)
        for u, start in enumerate(starts.tolist())
        for step in range(length)
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame, pl.DataFrame({"item_id": [f"c{i}" for i in range(N_CYCLE)]}))


@pytest.fixture(scope="module")
def cycle() -> tuple[Dataset, SASRec]:
    data = _cycle_data()
    return data, SASRec(**TINY).fit(data)


def _idx(data: Dataset, *positions: int) -> list[int]:
    return [data.items.idx_of(f"c{p % N_CYCLE}") for p in positions]


def _next_items(data: Dataset, model: SASRec) -> list[str]:
    """The top item after the history c{j-4} .. c{j}, for every j. (Histories much shorter
    than the training windows would sit at positions, next to padding, never trained on.)"""
    rows = [_idx(data, *range(j - 4, j + 1)) for j in range(N_CYCLE)]
    anonymous = np.full(N_CYCLE, data.n_users, dtype=np.int32)
    top = model.recommend(anonymous, 1, histories=Histories.from_lists(rows, data.n_items))
    return [data.items.id_of(int(i)) for i in top.items[:, 0]]


def test_learns_the_next_item_of_a_cycle(cycle: tuple[Dataset, SASRec]) -> None:
    data, model = cycle
    assert _next_items(data, model) == [f"c{(j + 1) % N_CYCLE}" for j in range(N_CYCLE)]


def test_learns_the_cycle_with_the_sampled_negative_loss() -> None:
    data = _cycle_data()
    config = {**TINY, "loss": "bce", "lr": 0.02, "max_epochs": 80, "patience": 80}
    got = _next_items(data, SASRec(**config).fit(data))
    right = sum(item == f"c{(j + 1) % N_CYCLE}" for j, item in enumerate(got))
    assert right >= N_CYCLE - 2, got  # one sampled negative: noisier than the full softmax


def test_a_fresh_event_changes_the_answer_at_once(cycle: tuple[Dataset, SASRec]) -> None:
    data, model = cycle
    user = 0
    fitted = model.histories_.rows([user])
    last = data.items.id_of(int(fitted.items[-1]))
    step = int(last[1:])
    assert (
        data.items.id_of(int(model.recommend([user], 1).items[0, 0])) == f"c{(step + 1) % N_CYCLE}"
    )
    # The user watches the predicted item after fit: the next answer moves one step on.
    new_item = _idx(data, step + 1)[0]
    fresh = Histories(
        indptr=np.array([0, fitted.items.size + 1]),
        items=np.append(fitted.items, new_item),
        timestamps=np.append(fitted.timestamps, fitted.timestamps[-1] + 1),
        weights=np.append(fitted.weights, 1.0),
        n_items=data.n_items,
    )
    top = model.recommend([user], 1, histories=fresh)
    assert data.items.id_of(int(top.items[0, 0])) == f"c{(step + 2) % N_CYCLE}"


def test_only_the_latest_max_len_items_are_read(cycle: tuple[Dataset, SASRec]) -> None:
    data, model = cycle
    items = np.arange(data.n_items)
    latest = _idx(data, *range(TINY["max_len"]))
    histories = Histories.from_lists([latest, _idx(data, 7, 9) + latest, latest[1:]], data.n_items)
    scores = model.score([0, 0, 0], items, histories=histories)
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-6)  # older than max_len: ignored
    assert not np.allclose(scores[2], scores[0])  # within max_len: read


def test_an_empty_history_gets_the_popularity_row(cycle: tuple[Dataset, SASRec]) -> None:
    data, model = cycle
    empty = Histories.from_lists([[]], data.n_items)
    scores = model.score([data.n_users], np.arange(data.n_items), histories=empty)[0]
    users_per_item = np.asarray(data.user_item_matrix("binary").sum(axis=0)).ravel()
    np.testing.assert_allclose(scores, users_per_item / data.n_users, rtol=1e-6)


def test_same_seed_same_scores_other_seed_other_scores() -> None:
    data = _cycle_data(n_users=12)
    config = {**TINY, "max_epochs": 3}
    everyone = np.arange(data.n_users)
    a, b = (SASRec(**config, seed=1).fit(data) for _ in range(2))
    other = SASRec(**config, seed=2).fit(data)
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(a.score(everyone, items), b.score(everyone, items))
    assert not np.allclose(a.score(everyone, items), other.score(everyone, items))


def test_save_load_round_trip(cycle: tuple[Dataset, SASRec], tmp_path: Path) -> None:
    data, model = cycle
    model.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["files_sha256"]) == {"sasrec.pt"}
    loaded = CandidateGenerator.load(tmp_path)
    histories = Histories.from_lists([_idx(data, 1, 2), [], _idx(data, 5)], data.n_items)
    users = np.array([0, data.n_users, -1], dtype=np.int32)
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(
        model.score(users, items, histories=histories),
        loaded.score(users, items, histories=histories),
    )


class NotATensor:
    """Any pickled object: loading it would run arbitrary code in general."""


def _replace_state_file(folder: Path, content: object) -> None:
    path = folder / "sasrec.pt"
    torch.save(content, path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files_sha256"]["sasrec.pt"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_load_refuses_a_pickled_object(cycle: tuple[Dataset, SASRec], tmp_path: Path) -> None:
    _, model = cycle
    model.save(tmp_path)
    _replace_state_file(tmp_path, {"item_embedding.weight": NotATensor()})
    with pytest.raises(DataError, match=r"sasrec\.pt.*not a SASRec state dict of tensors"):
        CandidateGenerator.load(tmp_path)


def test_load_refuses_a_state_dict_of_another_shape(
    cycle: tuple[Dataset, SASRec], tmp_path: Path
) -> None:
    _, model = cycle
    model.save(tmp_path)
    _replace_state_file(tmp_path, {"item_embedding.weight": torch.zeros(3, 2)})
    with pytest.raises(DataError, match="not a SASRec state dict"):
        CandidateGenerator.load(tmp_path)


def test_load_refuses_a_changed_state_file(cycle: tuple[Dataset, SASRec], tmp_path: Path) -> None:
    _, model = cycle
    model.save(tmp_path)
    torch.save({}, tmp_path / "sasrec.pt")  # the manifest's checksum no longer matches
    with pytest.raises(DataError, match=r"sasrec\.pt is missing or does not match"):
        CandidateGenerator.load(tmp_path)


def _hand_histories() -> Histories:
    # row 0: items 4, 5, 6, 7, 8 in time order; row 1: one item; row 2: nothing.
    return Histories.from_lists([[4, 5, 6, 7, 8], [3], []], n_items=9)


def test_last_items_left_pads_the_latest_events() -> None:
    got = last_items(_hand_histories(), max_len=3)
    np.testing.assert_array_equal(got, [[7, 8, 9], [0, 0, 4], [0, 0, 0]])  # idx + 1, 0 = pad


def test_training_windows_cover_every_next_item_pair() -> None:
    inputs, targets = training_windows(_hand_histories(), max_len=3)
    # 4 pairs of row 0 in windows of 3 from the end; row 1 has no pair; row 2 nothing.
    np.testing.assert_array_equal(inputs, [[6, 7, 8], [0, 0, 5]])
    np.testing.assert_array_equal(targets[..., 0], [[7, 8, 9], [0, 0, 6]])


def test_training_windows_with_a_horizon_target_the_next_items() -> None:
    _, targets = training_windows(_hand_histories(), max_len=3, horizon=3)
    # row 0 (idx + 1: 5..9): the position reading item 7 sees 8 and 9 ahead, then the end.
    np.testing.assert_array_equal(targets[0], [[7, 8, 9], [8, 9, 0], [9, 0, 0]])
    np.testing.assert_array_equal(targets[1], [[0, 0, 0], [0, 0, 0], [6, 7, 8]])


def test_a_horizon_learns_the_items_further_ahead() -> None:
    # On the cycle, horizon 3 teaches the next three items: after c{j-4} .. c{j}, the top 3
    # are c{j+1}, c{j+2}, c{j+3} (in any order), which next-item training does not ask for.
    data = _cycle_data()
    model = SASRec(**{**TINY, "horizon": 3}).fit(data)
    rows = [_idx(data, *range(j - 4, j + 1)) for j in range(N_CYCLE)]
    anonymous = np.full(N_CYCLE, data.n_users, dtype=np.int32)
    top = model.recommend(anonymous, 3, histories=Histories.from_lists(rows, data.n_items))
    for j in range(N_CYCLE):
        assert sorted(top.items[j].tolist()) == sorted(_idx(data, j + 1, j + 2, j + 3)), j


def test_shuffle_ties_reorders_only_simultaneous_events() -> None:
    # row 0: item 0 alone at t=1, then items 1..6 all at t=2; row 1: items 7, 8 at t=1, 2.
    histories = Histories.from_lists(
        [[0, 1, 2, 3, 4, 5, 6], [7, 8]], 9, timestamps=[[1, 2, 2, 2, 2, 2, 2], [1, 2]]
    )
    orders = {
        tuple(shuffle_ties(histories, np.random.default_rng(seed)).items.tolist())
        for seed in range(5)
    }
    assert len(orders) > 1  # the simultaneous items come in several orders
    for order in orders:
        assert order[0] == 0 and sorted(order[1:7]) == [1, 2, 3, 4, 5, 6]
        assert order[7:] == (7, 8)


def test_config_checks() -> None:
    with pytest.raises(ValidationError, match="multiple of n_heads"):
        SASRec(dim=10, n_heads=4)
    with pytest.raises(ValidationError):
        SASRec(loss="softmax")
    with pytest.raises(ValidationError):
        SASRec(max_epoch=3)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_learns_the_cycle_and_reloads_identically(tmp_path: Path) -> None:
    # The CUDA path (bf16 autocast): the same cycle is learnt, and a saved model loaded back
    # on the GPU scores exactly as the fitted one.
    data = _cycle_data()
    model = SASRec(**{**TINY, "device": "cuda"}).fit(data)
    assert model.device_.type == "cuda"
    assert _next_items(data, model) == [f"c{(j + 1) % N_CYCLE}" for j in range(N_CYCLE)]
    model.save(tmp_path)
    loaded = CandidateGenerator.load(tmp_path)
    users = np.arange(data.n_users, dtype=np.int32)
    np.testing.assert_array_equal(loaded.recommend(users, 5).items, model.recommend(users, 5).items)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="device='cuda' was requested but torch sees no CUDA"):
        SASRec(**{**TINY, "device": "cuda"}).fit(_cycle_data())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_a_model_trained_with_cuda_loads_and_scores_on_a_cpu_machine(
    cycle: tuple[Dataset, SASRec], tmp_path: Path
) -> None:
    # Trained on a GPU machine with device = "cuda", served on CPU ones: the saved config
    # says cuda, and loading it here must not refuse the model (the weights are the same).
    data, model = cycle
    trained_on_gpu = copy.copy(model)
    trained_on_gpu.config = model.config.model_copy(update={"device": "cuda"})
    trained_on_gpu.save(tmp_path)
    loaded = CandidateGenerator.load(tmp_path)
    assert isinstance(loaded, SASRec) and loaded.device_.type == "cpu"
    users = np.arange(data.n_users, dtype=np.int32)
    np.testing.assert_array_equal(loaded.score_catalog(users), model.score_catalog(users))


def test_two_event_histories_are_learnt_with_the_default_validation_window() -> None:
    # Every user has two events: a validation window holds one out of each, which leaves no
    # next item to fit on (and chose 1 epoch); the member must still learn from the data.
    data = _cycle_data(n_users=200, length=2)
    model = SASRec(**TINY).fit(data)
    assert model.best_epochs_ is None and len(model.epoch_seconds_) == TINY["max_epochs"]
    rows = [_idx(data, j) for j in range(N_CYCLE)]
    anonymous = np.full(N_CYCLE, data.n_users, dtype=np.int32)
    top = model.recommend(anonymous, 1, histories=Histories.from_lists(rows, data.n_items))
    next_items = [data.items.id_of(int(i)) for i in top.items[:, 0]]
    assert next_items == [f"c{(j + 1) % N_CYCLE}" for j in range(N_CYCLE)]
