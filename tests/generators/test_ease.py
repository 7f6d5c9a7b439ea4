from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators import ease as ease_module
from recsemble.generators.ease import EASE, EASERecent, ease_weights
from recsemble.generators.history import Histories

DAY = 86_400


def _data(pairs: list[tuple[str, str, int]]) -> Dataset:
    frame = pl.DataFrame(pairs, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


# Users u100..u105 over items i900..i904: two overlapping tastes and one loner item (i904).
ROWS = [
    ("u100", "i900", 1 * DAY),
    ("u100", "i901", 2 * DAY),
    ("u100", "i902", 3 * DAY),
    ("u101", "i900", 1 * DAY),
    ("u101", "i901", 2 * DAY),
    ("u102", "i901", 1 * DAY),
    ("u102", "i902", 2 * DAY),
    ("u102", "i903", 3 * DAY),
    ("u103", "i902", 1 * DAY),
    ("u103", "i903", 2 * DAY),
    ("u104", "i900", 1 * DAY),
    ("u104", "i904", 2 * DAY),
    ("u105", "i903", 4 * DAY),
]


def _reference(x: np.ndarray, l2: float) -> np.ndarray:
    """The EASE closed form straight from the paper, in float64."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_known_answer_against_direct_closed_form() -> None:
    data = _data(ROWS)
    model = EASE(l2=2.0, device="cpu").fit(data)
    x = data.user_item_matrix("binary").toarray().astype(np.float64)
    want = _reference(x, 2.0)
    np.testing.assert_allclose(model.weights_, want, atol=1e-5)
    assert np.all(np.diag(model.weights_) == 0.0)
    # Scores are the user's profile times B.
    u = data.users.idx_of("u101")
    scores = model.score([u], np.arange(data.n_items))[0]
    np.testing.assert_allclose(scores, x[u] @ want, atol=1e-5)


@pytest.mark.parametrize(("n_users", "n_items"), [(40, 15), (15, 40)])
def test_primal_and_dual_routes_agree_with_reference(n_users: int, n_items: int) -> None:
    # More users than items: Cholesky inverse of X^T X; fewer: the Woodbury (dual) route.
    x = sp.random_array((n_users, n_items), density=0.3, random_state=7, format="csr")
    x.data[:] = 1.0
    for l2 in (0.5, 30.0):
        got = ease_weights(x, l2)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, _reference(x.toarray(), l2), atol=2e-5)
        assert np.all(np.diag(got) == 0.0)


def test_event_weights_when_not_binary() -> None:
    rows = [(*r, "view") for r in ROWS] + [("u100", "i900", 5 * DAY, "purchase")]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event"], orient="row")
    data = Dataset.from_frames(frame, event_weights={"view": 1.0, "purchase": 4.0})
    weighted = EASE(l2=2.0, binary=False).fit(data)
    x = data.user_item_matrix("weight").toarray().astype(np.float64)
    assert x.max() == 5.0  # the repeat sums: 1 + 4
    np.testing.assert_allclose(weighted.weights_, _reference(x, 2.0), atol=1e-5)
    binary = EASE(l2=2.0).fit(data)
    assert not np.allclose(binary.weights_, weighted.weights_)


def _two_tastes() -> Dataset:
    # i900 goes with i902 and i901 with i903, symmetrically, so only recency can split them.
    rows = []
    for n in range(4):
        rows += [(f"u1{n}0", "i900", DAY), (f"u1{n}0", "i902", 2 * DAY)]
        rows += [(f"u1{n}1", "i901", DAY), (f"u1{n}1", "i903", 2 * DAY)]
    return _data(rows)


def test_recency_weighting_ranks_the_recent_taste_first() -> None:
    data = _two_tastes()
    a, b, c, d = (data.items.idx_of(i) for i in ("i900", "i901", "i902", "i903"))
    # One history, two orders: i900 then i901 (i901 recent), and the reverse.
    hist = Histories.from_lists([[a, b], [b, a]], data.n_items)
    unknown = [data.n_users, data.n_users]
    plain = EASE(l2=1.0).fit(data).score(unknown, [c, d], histories=hist)
    assert plain[0, 0] == pytest.approx(plain[0, 1], rel=1e-5)  # no recency: a tie
    recent = EASERecent(l2=1.0, half_life_events=1.0).fit(data)
    scores = recent.score(unknown, [c, d], histories=hist)
    assert scores[0, 1] > scores[0, 0]  # i901 is recent: its neighbour i903 first
    assert scores[1, 0] > scores[1, 1]
    top = recent.recommend(unknown, 1, histories=hist)
    assert [data.items.id_of(i) for i in top.items[:, 0]] == ["i903", "i902"]
    # Simultaneous events share an age: no order is read into them.
    same_time = Histories.from_lists([[a, b]], data.n_items, timestamps=[[5, 5]])
    tied = recent.score(unknown[:1], [c, d], histories=same_time)[0]
    assert tied[0] == pytest.approx(tied[1], rel=1e-5)


def test_fold_in_changes_the_answer_and_empty_history_gets_nothing() -> None:
    data = _data(ROWS)
    model = EASE(l2=1.0).fit(data)
    i900, i903 = data.items.idx_of("i900"), data.items.idx_of("i903")
    hist = Histories.from_lists([[i900], [i903], []], data.n_items)
    unknown = np.full(3, data.n_users + 3, dtype=np.int32)
    top = model.recommend(unknown, 2, histories=hist)
    assert data.items.id_of(top.items[0, 0]) == "i901"  # i900's strongest neighbour
    assert data.items.id_of(top.items[1, 0]) == "i902"
    assert top.items[2].tolist() == [-1, -1]  # nothing to go on
    assert np.all(np.isneginf(top.scores[2]))
    # A known user's fitted history is replaced by the passed one.
    u105 = data.users.idx_of("u105")
    before = model.score([u105], np.arange(data.n_items))
    after = model.score([u105], np.arange(data.n_items), histories=hist.rows([0]))
    assert not np.array_equal(before, after)


def test_unknown_users_get_padded_empty_lists() -> None:
    data = _data(ROWS)
    top = EASE().fit(data).recommend([data.n_users + 1, -1], k=3)
    assert np.all(top.items == -1)
    assert np.all(np.isneginf(top.scores))


def test_save_load_identical_scores(tmp_path: Path) -> None:
    data = _data(ROWS)
    model = EASERecent(l2=3.0).fit(data)
    loaded = CandidateGenerator.load(model.save(tmp_path / "ease"))
    assert isinstance(loaded, EASERecent)
    assert loaded.config == model.config
    users = np.arange(-1, data.n_users + 1)
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))


def test_similar_items_are_the_largest_weights() -> None:
    data = _data(ROWS)
    model = EASE(l2=1.0).fit(data)
    top = model.similar_items(np.arange(data.n_items), 2)
    for item in range(data.n_items):
        row = model.weights_[item].copy()
        row[item] = -np.inf
        assert top.items[item, 0] == int(np.argmax(row))
        assert item not in top.items[item].tolist()


def test_torch_path_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    for rows in (ROWS, ROWS[:5]):  # more users than items, and fewer
        data = _data(rows)
        users = np.arange(data.n_users)
        items = np.arange(data.n_items)
        numpy_model = EASERecent(l2=2.0, device="cpu").fit(data)
        # The GPU code path, run on the CPU: the same torch calls with device "cpu".
        monkeypatch.setattr(ease_module, "_resolve_device", lambda device: "cpu")
        torch_model = EASERecent(l2=2.0).fit(data)
        monkeypatch.undo()
        assert torch_model.device_ == "cpu" and numpy_model.device_ is None
        np.testing.assert_allclose(torch_model.weights_, numpy_model.weights_, atol=1e-5)
        np.testing.assert_allclose(
            torch_model.score(users, items), numpy_model.score(users, items), atol=1e-5
        )


@pytest.mark.parametrize(("n_users", "n_items"), [(40, 15), (15, 40)])
def test_torch_routes_and_blocked_gram_match_reference(
    n_users: int, n_items: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GPU routes on CPU torch: the Gram built over blocks of 7 users' rows, and the same
    # primal / dual choice as the numpy route.
    pytest.importorskip("torch")
    monkeypatch.setattr(ease_module, "_GRAM_BLOCK_CELLS", 7 * n_items)
    duals: list[tuple[int, int]] = []
    dual_form = ease_module._dual_form_torch

    def counted_dual_form(x: sp.csr_array, l2: float, device: str) -> object:
        duals.append(x.shape)
        return dual_form(x, l2, device)

    monkeypatch.setattr(ease_module, "_dual_form_torch", counted_dual_form)
    x = sp.random_array((n_users, n_items), density=0.3, random_state=3, format="csr")
    x.data[:] = np.ceil(x.data * 3)  # event weights 1..3, not only 1s
    for l2 in (0.5, 30.0):
        got = ease_weights(x, l2, "cpu")
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, _reference(x.toarray(), l2), atol=2e-5)
        assert np.all(np.diag(got) == 0.0)
    assert len(duals) == (2 if n_users < n_items else 0)


def test_torch_fit_keeps_weights_on_device_until_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    data = _data(ROWS)
    monkeypatch.setattr(ease_module, "_resolve_device", lambda device: "cpu")
    model = EASE(l2=2.0).fit(data)
    users, items = np.arange(data.n_users), np.arange(data.n_items)
    scores = model.score(users, items)
    similar = model.similar_items(items, 2)
    assert model._host_weights is None  # scoring and similar_items used the device copy alone
    with pytest.raises(IndexError):
        model.similar_items([data.n_items], 2)
    # Row-major like the host copy a loaded model moves over: the same GEMM, the same bits.
    assert model._device_weights is not None and model._device_weights.is_contiguous()
    loaded = CandidateGenerator.load(model.save(tmp_path / "ease"))  # save copies B back
    assert model._host_weights is not None
    np.testing.assert_array_equal(loaded.score(users, items), scores)
    np.testing.assert_array_equal(loaded.similar_items(items, 2).items, similar.items)
    x = data.user_item_matrix("binary").toarray().astype(np.float64)
    np.testing.assert_allclose(model.weights_, _reference(x, 2.0), atol=1e-5)


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="device='cuda'"):
        EASE(device="cuda").fit(_data(ROWS))
    assert EASE(device="auto").fit(_data(ROWS)).device_ is None


def test_registered_and_configs() -> None:
    assert GENERATORS["ease"] is EASE
    assert GENERATORS["ease-recent"] is EASERecent
    assert EASE().config.half_life_events is None
    assert EASERecent().config.half_life_events is not None
    with pytest.raises(ValueError):
        EASE(l2=0.0)
    with pytest.raises(ValueError):
        EASE(device="tpu")


@pytest.mark.realdata
def test_defaults_beat_popularity_on_ml100k(shared_datasets: Path) -> None:
    from recsemble.data import load_dataset
    from recsemble.evaluation import evaluate, prepare, split

    s = split(prepare(load_dataset("ml-100k", data_dir=shared_datasets)), "temporal-user")
    result = evaluate(s, {"ease": EASE(), "ease-recent": EASERecent()})
    assert result.summary("ease", 10)["ndcg@10"] > 0.1158
    assert result.summary("ease-recent", 10)["ndcg@10"] > result.summary("ease", 10)["ndcg@10"]


def test_a_model_fitted_with_cuda_loads_and_scores_on_a_cpu_machine(tmp_path: Path) -> None:
    # Fitted on a GPU machine with device = "cuda" (its saved config says so), served here.
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present")
    except ImportError:
        pass
    data = _data(ROWS)
    model = EASE(l2=1.0, device="cpu").fit(data)
    fitted_on_gpu = copy.copy(model)
    fitted_on_gpu.config = model.config.model_copy(update={"device": "cuda"})
    loaded = CandidateGenerator.load(fitted_on_gpu.save(tmp_path / "ease"))
    users, items = np.arange(data.n_users), np.arange(data.n_items)
    np.testing.assert_array_equal(loaded.score(users, items), model.score(users, items))
