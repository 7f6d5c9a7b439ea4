"""The two-tower member on tiny data (CPU): clusters, fresh histories, cold items, logQ,
save/load and determinism. The shared contract runs in test_contract.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

pytest.importorskip("torch")

from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import SyntheticConfig, generate
from recsemble.errors import ConfigError
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.generators.twotower import STATE_FILE, TwoTower
from recsemble.testing.data import (
    ACTION_ITEMS,
    DAY,
    DRAMA_ITEMS,
    EVENT_WEIGHTS,
    tiny_dataset,
)

#: Small and quick on the tiny data; no validation window (it holds 1 event per user).
TINY: dict[str, Any] = {"dim": 16, "max_epochs": 40, "validation_fraction": 0, "device": "cpu"}


def _torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _fit(data: Dataset, **overrides: Any) -> TwoTower:
    model = TwoTower(**{**TINY, **overrides}).fit(data)
    assert isinstance(model, TwoTower)
    return model


def _idx(data: Dataset, ids: tuple[str, ...] | list[str]) -> list[int]:
    return [data.items.idx_of(i) for i in ids]


def _share_in(top: np.ndarray, cluster: list[int]) -> float:
    return float(np.isin(top, cluster).mean())


def test_users_get_their_own_cluster() -> None:
    data = tiny_dataset()
    model = _fit(data)
    action, drama = _idx(data, ACTION_ITEMS), _idx(data, DRAMA_ITEMS)
    action_users = [data.users.idx_of(u) for u in ("u100", "u101", "u102")]
    drama_users = [data.users.idx_of(u) for u in ("u104", "u105", "u106")]
    # Each of these users has 1-3 unseen items left in their own cluster: the first one is it.
    assert _share_in(model.recommend(action_users, 1).items, action) == 1.0
    assert _share_in(model.recommend(drama_users, 1).items, drama) == 1.0


def test_fresh_history_changes_the_answer_at_once() -> None:
    data = tiny_dataset()
    model = _fit(data)
    user = data.users.idx_of("u100")
    fitted = model.histories_.rows([user])
    drama = _idx(data, DRAMA_ITEMS)
    later = int(fitted.timestamps.max()) + DAY
    fresh = Histories.from_lists(
        [fitted.items.tolist() + drama[:3]],
        data.n_items,
        timestamps=[[*fitted.timestamps.tolist(), later, later + 1, later + 2]],
    )
    before = model.recommend([user], 2).items
    after = model.recommend([user], 2, histories=fresh, at=later + 3).items
    assert _share_in(before, drama) == 0.0
    assert _share_in(after, drama) == 1.0  # the user's latest events lead the pooling


def _with_cold_item(data: Dataset) -> tuple[Dataset, str]:
    """tiny_dataset plus a new action film nobody has interacted with yet."""
    items = data.item_attributes.with_columns(
        pl.Series("item_id", data.items.to_ids(np.arange(data.n_items)), dtype=pl.String)
    )
    cold = items.filter(pl.col("item_id") == "i901").with_columns(
        pl.lit("i999").alias("item_id"),
        pl.lit("Laser Starships").alias("title"),
        pl.lit("starships with lasers fight a war among the stars").alias("text"),
    )
    return Dataset.from_frames(
        data.external_interactions(),
        pl.concat([items, cold]),
        data.user_attributes.with_columns(
            pl.Series("user_id", data.users.to_ids(np.arange(data.n_users)), dtype=pl.String)
        ),
        event_weights=EVENT_WEIGHTS,
    ), "i999"


def test_a_new_item_with_content_only_is_recommended() -> None:
    data, cold_id = _with_cold_item(tiny_dataset())
    cold = data.items.idx_of(cold_id)
    assert data.item_popularity[cold] == 0
    model = _fit(data)
    # u103's latest event is a drama, which the pooling weighs most: as in the cluster test,
    # the action users are those whose latest events are action films.
    action_users = [data.users.idx_of(u) for u in ("u100", "u101", "u102")]
    top = model.recommend(action_users, 3).items
    assert np.all((top == cold).any(axis=1)), f"the cold item is missing from {top}"
    drama_users = [data.users.idx_of(u) for u in ("u104", "u105", "u106")]
    assert not (model.recommend(drama_users, 2).items == cold).any()  # it is an action film
    assert np.isfinite(model.score([0], [cold])).all()


def test_with_id_dropout_1_items_are_placed_by_their_content_alone() -> None:
    # id_dropout = 1: no item ever trains its id embedding, so two items with the same
    # content must get the same vector (the untrained, random id part must not be added).
    data, categories = _skewed_dataset(), ("categories",)
    model = _fit(data, dim=16, max_epochs=2, batch_size=128, id_dropout=1.0, fields=categories)
    features = model.features_.toarray()
    _, group, counts = np.unique(features, axis=0, return_inverse=True, return_counts=True)
    twins = np.flatnonzero(counts[group.ravel()] > 1)
    assert twins.size, "the test needs items with identical content"
    for g in np.unique(group.ravel()[twins]):
        same = np.flatnonzero(group.ravel() == g)
        vectors = model.item_vectors_[same]
        np.testing.assert_allclose(vectors, np.repeat(vectors[:1], same.size, axis=0), rtol=1e-6)


def test_id_dropout_1_without_item_content_is_a_clear_error() -> None:
    # Content alone, and no content: every item would be left out of every list.
    with pytest.raises(ConfigError, match=r"id_dropout = 1 .* no item has any in fields \[\]"):
        _fit(tiny_dataset(), id_dropout=1.0, fields=())


def test_two_event_histories_are_learnt_with_the_default_validation_window() -> None:
    # Every user has two events: a validation window holds one out of each, which leaves no
    # (history -> next item) pair to fit on; the member must still learn from the data.
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"c{u % 4}i{i:02d}", 1000 * u + step)
        for u in range(600)
        for step, i in enumerate(rng.choice(25, 2, replace=False).tolist())
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    data = Dataset.from_frames(frame)
    model = _fit(data, max_epochs=20, batch_size=32, lr=0.01, validation_fraction=0.1)
    assert model.training_log_.epochs_kept == 20
    top = model.recommend(np.arange(data.n_users), 5).items
    user_cluster = np.array([int(u[1:]) % 4 for u in data.users.to_ids(np.arange(data.n_users))])
    item_cluster = np.array([int(i[1]) for i in data.items.to_ids(np.arange(data.n_items))])
    assert (item_cluster[top] == user_cluster[:, None]).mean() > 0.9


def test_simultaneous_events_are_not_read_as_a_sequence() -> None:
    # Each user meets a{k} and b{k} at one moment, three times. "a before b" is only how ids
    # sort (the order histories list ties in): each must bring the other to the top alike.
    rng = np.random.default_rng(1)
    rows = [
        (f"u{u}", f"{side}{k:02d}", 1000 * u + moment)
        for u in range(500)
        for moment, k in enumerate(rng.choice(20, 3, replace=False).tolist())
        for side in "ab"
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    data = Dataset.from_frames(frame)
    model = _fit(data, max_epochs=8, batch_size=64, lr=0.005, fields=())
    a, b = (np.array(_idx(data, [f"{side}{k:02d}" for k in range(20)])) for side in "ab")

    def rank_of(targets: np.ndarray, given: np.ndarray) -> np.ndarray:
        histories = Histories.from_lists([[i] for i in given.tolist()], data.n_items)
        unknown = np.full(given.size, data.n_users, dtype=np.int32)
        scores = model.score_catalog(unknown, histories=histories)
        return (scores > scores[np.arange(given.size), targets][:, None]).sum(axis=1)

    assert rank_of(b, given=a).max() <= 1 and rank_of(a, given=b).max() <= 1


def _skewed_dataset() -> Dataset:
    config = SyntheticConfig(n_users=300, n_items=150, n_interactions=6000, n_categories=4)
    interactions, items, users = generate(config)
    return Dataset.from_frames(interactions, items, users, event_weights=EVENT_WEIGHTS)


def test_logq_undoes_the_in_batch_popularity_penalty() -> None:
    """In-batch negatives are drawn by popularity: without the correction the softmax learns
    log(p(item | user) / q(item)) and pushes popular items down; the logQ correction restores
    the full softmax's log p(item | user), so popular items come back up the lists."""
    data = _skewed_dataset()
    users = np.flatnonzero(data.user_history_lengths > 0)
    popularity = data.item_popularity.astype(float)

    def mean_popularity(logq: bool) -> float:
        model = _fit(data, dim=32, max_epochs=4, batch_size=128, logq=logq)
        top = model.recommend(users, 10).items
        return float(popularity[top[top >= 0]].mean())

    with_logq, without = mean_popularity(True), mean_popularity(False)
    assert with_logq > 1.5 * without, f"logq on: {with_logq:.1f}, off: {without:.1f}"


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    data = tiny_dataset()
    model = _fit(data, hard_negatives=2)
    model.save(tmp_path)
    assert (tmp_path / STATE_FILE).is_file()
    loaded = CandidateGenerator.load(tmp_path)
    assert isinstance(loaded, TwoTower)
    users, items = np.arange(-1, data.n_users + 1), np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))
    np.testing.assert_array_equal(model.item_vectors_, loaded.item_vectors_)


def test_the_seed_fixes_the_model() -> None:
    data = tiny_dataset()
    users, items = np.arange(data.n_users), np.arange(data.n_items)
    first, second = _fit(data, seed=3), _fit(data, seed=3)
    np.testing.assert_array_equal(first.score(users, items), second.score(users, items))
    other = _fit(data, seed=4)
    assert not np.array_equal(first.score(users, items), other.score(users, items))


def test_validation_window_chooses_the_epochs_then_refits() -> None:
    data = _skewed_dataset()
    model = _fit(data, dim=16, max_epochs=6, patience=1, validation_fraction=0.2)
    log = model.training_log_
    assert 1 <= log.epochs_kept <= len(log.validation) <= 6
    assert log.epochs_kept == int(np.argmax(log.validation)) + 1  # the best epoch is kept
    # The refit on all data ran the kept number of epochs after the validated ones.
    assert len(log.epoch_seconds) == len(log.validation) + log.epochs_kept


def test_ann_search_agrees_with_the_exact_product() -> None:
    data = tiny_dataset()
    exact = _fit(data)
    approximate = _fit(data, ann_threshold=1)
    users = np.arange(data.n_users)
    top_exact, top_ann = exact.recommend(users, 4), approximate.recommend(users, 4)
    np.testing.assert_array_equal(top_exact.items, top_ann.items)
    np.testing.assert_allclose(top_exact.scores, top_ann.scores, rtol=1e-5, atol=1e-6)
    similar = approximate.similar_items(np.arange(data.n_items), 3)
    np.testing.assert_array_equal(
        similar.items, exact.similar_items(np.arange(data.n_items), 3).items
    )


@pytest.mark.skipif(not _torch_cuda(), reason="needs a CUDA GPU")
def test_cuda_training_finds_the_clusters_and_reloads_identically(tmp_path: Path) -> None:
    # The CUDA path (bf16 autocast): the same clusters are learnt on the GPU, and the saved
    # model (item vectors computed on the host) scores exactly as the fitted one.
    data = tiny_dataset()
    model = _fit(data, device="cuda")
    action_users = [data.users.idx_of(u) for u in ("u100", "u101", "u102")]
    top = model.recommend(action_users, 1).items
    assert _share_in(top, _idx(data, ACTION_ITEMS)) == 1.0
    model.save(tmp_path)
    loaded = CandidateGenerator.load(tmp_path)
    users, items = np.arange(data.n_users), np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))


def test_fit_reports_each_epoch_as_a_progress_step() -> None:
    """`evaluate` and `train` showed a deep member as one 0/1 step for its whole fit."""
    from recsemble.config import RecsembleConfig
    from recsemble.evaluation.runner import fit_counting
    from recsemble.ranking.training import training_steps

    settings = {**TINY, "max_epochs": 6, "patience": 1, "validation_fraction": 0.2}
    model = TwoTower(**settings)
    steps: list[tuple[int, int]] = []
    fit_counting(model, _skewed_dataset(), lambda done, total: steps.append((done, total)))
    ran = len(model.training_log_.epoch_seconds)  # validated epochs, then the refit's
    assert model.fit_steps == 12 and steps[0] == (0, 12) and steps[-1] == (12, 12)
    assert [done for done, _ in steps[1:-1]] == list(range(1, ran + 1))
    config = RecsembleConfig.model_validate({"models": {"twotower": settings}})
    assert training_steps(config, "twotower") == 12
    assert training_steps(RecsembleConfig(), "sasrec") == 400  # 200 epochs at most, twice


def test_mining_in_blocks_of_users_gives_the_same_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hard negatives scored every user against every item at once (about 15 GB on ml-20m):
    scored in blocks of rows, the top unseen items are the same."""
    from recsemble.generators import twotower_net

    data = _skewed_dataset()
    model = _fit(data, max_epochs=2)
    events = Histories.from_dataset(data)
    at = np.full(events.n_rows, 2_000_000_000, dtype=np.int64)
    whole = twotower_net.top_unseen(model.net_, events, at, 5)
    monkeypatch.setattr(twotower_net, "SCORE_BLOCK_CELLS", 3 * data.n_items)  # 3 rows a block
    blocked = twotower_net.top_unseen(model.net_, events, at, 5)
    assert whole.shape == (data.n_users, 5)
    np.testing.assert_array_equal(blocked, whole)
