from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.generators import GENERATORS
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.covisit import (
    CoVisitation,
    keep_top_per_row,
    normalize_counts,
    transition_counts,
)
from recsemble.generators.history import Histories

RAW = {"power": 1.0, "source_norm": 0.0, "target_norm": 0.0, "simultaneous_weight": 0.0}

# u100: i900, then i901 and i902 at one moment (simultaneous), then i903.
# u101: i903 -> i904. u102: i900 -> i901 -> i904 (one step each).
ROWS = [
    ("u100", "i900", 10),
    ("u100", "i901", 20),
    ("u100", "i902", 20),
    ("u100", "i903", 30),
    ("u101", "i903", 5),
    ("u101", "i904", 6),
    ("u102", "i900", 1),
    ("u102", "i901", 2),
    ("u102", "i904", 3),
]


def _data(rows: list[tuple[str, str, int]] = ROWS) -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame({"item_id": [f"i{900 + i}" for i in range(6)]})  # i905: never seen
    return Dataset.from_frames(frame, items)


def _dense(data: Dataset, model: CoVisitation) -> dict[tuple[str, str], float]:
    t = model.transitions_.tocoo()
    ids = data.items.id_of
    return {
        (ids(int(r)), ids(int(c))): round(float(v), 6)
        for r, c, v in zip(t.row, t.col, t.data, strict=True)
    }


def _ids(data: Dataset, items: np.ndarray) -> list[str]:
    return [data.items.id_of(int(i)) for i in items if i >= 0]


def test_transition_counts_by_hand_simultaneous_events_are_unordered() -> None:
    data = _data()
    got = _dense(data, CoVisitation(window=2, **RAW).fit(data))
    assert got == {
        # u100, d=1: i900 -> {i901, i902} (one step), {i901, i902} -> i903; d=2: i900 -> i903 / 2
        ("i900", "i901"): 1.0 + 1.0,  # + u102
        ("i900", "i902"): 1.0,
        ("i901", "i903"): 1.0,
        ("i902", "i903"): 1.0,
        ("i900", "i903"): 0.5,
        ("i903", "i904"): 1.0,  # u101
        ("i901", "i904"): 1.0,  # u102, d=1
        ("i900", "i904"): 0.5,  # u102, d=2
    }
    # No transition either way between the simultaneous i901 and i902.
    assert ("i901", "i902") not in got and ("i902", "i901") not in got


def test_window_power_and_simultaneous_weight() -> None:
    data = _data()
    one = _dense(data, CoVisitation(window=1, **RAW).fit(data))
    assert ("i900", "i903") not in one and ("i900", "i904") not in one
    flat = _dense(data, CoVisitation(window=2, **{**RAW, "power": 0.0}).fit(data))
    assert flat[("i900", "i903")] == 1.0  # power 0: every step in the window counts 1
    raw = {**RAW, "simultaneous_weight": 0.25}
    same = _dense(data, CoVisitation(window=1, **raw).fit(data))
    assert same[("i901", "i902")] == same[("i902", "i901")] == 0.25


def test_undirected_adds_the_reverse_direction() -> None:
    data = _data()
    both = _dense(
        data, CoVisitation(window=1, directed=False, backward_weight=0.5, **RAW).fit(data)
    )
    assert both[("i903", "i904")] == 1.0 and both[("i904", "i903")] == 0.5
    assert both[("i900", "i901")] == 2.0 and both[("i901", "i900")] == 1.0


def test_normalisation_and_top_neighbors() -> None:
    hist = Histories.from_lists([[0, 1], [0, 1], [0, 2], [3, 2]], n_items=4)
    counts = transition_counts(hist, window=1, power=1.0)
    assert counts.toarray().tolist() == [[0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    rows = normalize_counts(counts, source_norm=1.0, target_norm=0.0).toarray()
    assert rows[0].tolist() == pytest.approx([0, 2 / 3, 1 / 3, 0])
    cols = normalize_counts(counts, source_norm=0.0, target_norm=1.0).toarray()
    assert cols[0].tolist() == pytest.approx([0, 1, 0.5, 0])  # i2 reached 2 times in all
    tied = keep_top_per_row(normalize_counts(counts, 0.0, 1.0), 1).toarray()
    assert tied[0].tolist() == [0, 1, 0, 0]
    assert tied[3].tolist() == [0, 0, 0.5, 0]
    tie = keep_top_per_row(sp.csr_array(np.array([[0.0, 1.0, 1.0, 0.5]])), 1)
    assert tie.toarray().tolist() == [[0, 1, 0, 0]]  # a tie keeps the lower item idx


def test_recent_items_drive_the_scores() -> None:
    data = _data()
    model = CoVisitation(window=2, half_life_events=1.0, **RAW).fit(data)
    u100 = data.users.idx_of("u100")
    top = model.recommend([u100], k=3)
    # Only i904 is left unseen and reachable (from i903, i900); nothing reaches i905.
    assert _ids(data, top.items[0]) == ["i904"]
    i = data.items.idx_of
    # Factors by steps before the end: i903 1, i901 (and i902) 1/2, i900 1/4.
    want = 1.0 * 1.0 + 0.5 * 1.0 + 0.25 * 0.5
    assert model.score([u100], [i("i904")])[0, 0] == pytest.approx(want)
    assert model.score([u100], [i("i905")])[0, 0] == -np.inf


def test_fold_in_and_unknown_users() -> None:
    data = _data()
    model = CoVisitation(window=2, half_life_events=1.0, **RAW).fit(data)
    i = data.items.idx_of
    unknown = data.n_users + 3
    empty = model.recommend([unknown, -1], k=2)
    assert (empty.items == -1).all() and np.isneginf(empty.scores).all()
    after_900 = Histories.from_lists([[i("i900")]], data.n_items)
    assert _ids(data, model.recommend([unknown], 2, histories=after_900).items[0]) == [
        "i901",
        "i902",
    ]
    after_903 = Histories.from_lists([[i("i900"), i("i903")]], data.n_items)
    top = model.recommend([unknown], 1, histories=after_903)
    assert _ids(data, top.items[0]) == ["i904"]  # the newest event decides
    # A known user's fitted history is replaced by the one given at request time.
    u101 = data.users.idx_of("u101")
    assert _ids(data, model.recommend([u101], 2, histories=after_900).items[0]) == ["i901", "i902"]


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    data = _data()
    model = GENERATORS["covisit"](window=3, directed=False, simultaneous_weight=0.5).fit(data)
    loaded = CandidateGenerator.load(model.save(tmp_path / "covisit"))
    assert isinstance(loaded, CoVisitation)
    users = np.arange(data.n_users)
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))
    assert set(model._state()) == {"data", "indices", "indptr"}


def test_similar_items_follow_transitions() -> None:
    data = _data()
    model = CoVisitation(window=2, **RAW).fit(data)
    i = data.items.idx_of
    sim = model.similar_items([i("i900"), i("i905")], k=4)
    assert _ids(data, sim.items[0]) == ["i901", "i902", "i903", "i904"]
    assert sim.scores[0].tolist() == [2.0, 1.0, 0.5, 0.5]
    assert (sim.items[1] == -1).all()


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        CoVisitation(window=0)
    with pytest.raises(ValidationError):
        CoVisitation(source_norm=2.0)
    with pytest.raises(ValidationError):
        CoVisitation(neighbours=10)


@pytest.mark.realdata
def test_covisit_beats_popularity_on_ml100k(shared_datasets: Path) -> None:
    from recsemble.data import load_dataset
    from recsemble.evaluation import evaluate, prepare, split

    s = split(prepare(load_dataset("ml-100k", data_dir=shared_datasets)), "temporal-user")
    ev = evaluate(s, {"covisit": CoVisitation(), "pop": GENERATORS["pop"]()})
    covisit, pop = ev.summary("covisit", 10)["ndcg@10"], ev.summary("pop", 10)["ndcg@10"]
    assert pop == pytest.approx(0.1158, abs=1e-3)
    assert covisit > 0.20 > pop  # measured 0.246 with the defaults


def test_counts_in_blocks_of_users_add_up_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few users each (memory for large logs) give the one-pass counts."""
    from recsemble.generators import covisit

    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{int(i)}", int(t))
        for u in range(40)
        for i, t in zip(rng.integers(0, 30, 25), rng.integers(0, 12, 25), strict=True)
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    histories = Histories.from_dataset(Dataset.from_frames(frame))
    whole = transition_counts(histories, 4, 0.5, 0.5)
    monkeypatch.setattr(covisit, "BLOCK_EVENTS", 60)
    assert len(covisit._user_blocks(histories, 60)) > 10
    blocks = transition_counts(histories, 4, 0.5, 0.5)
    np.testing.assert_allclose(blocks.toarray(), whole.toarray(), rtol=1e-12)
    assert whole.nnz > 300
