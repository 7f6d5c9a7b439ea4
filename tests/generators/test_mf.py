from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.generators.mf import BPR, IALS, fold_in

DAY = 86_400
#: Small-data settings: the measured defaults regularize for MovieLens-sized data.
SMALL = {"ials": {"regularization": 5.0, "factors": 8}, "bpr": {"factors": 8, "iterations": 300}}
MODELS = {"ials": IALS, "bpr": BPR}


def _clusters() -> Dataset:
    """u100..u109 watch items i900..i904, u110..u119 watch i905..i909 (3 each, by rotation)."""
    rows = []
    for n in range(20):
        base = 900 if n < 10 else 905
        rows.extend((f"u{100 + n}", f"i{base + (n + s) % 5}", (s + 1) * DAY) for s in range(3))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


def _items(data: Dataset, ids: list[str]) -> list[int]:
    return [data.items.idx_of(i) for i in ids]


def _reference_fold_in(w: np.ndarray, y: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """(Y^T C_u Y + reg I)^-1 Y^T C_u p_u, one user at a time, in float64."""
    out = np.zeros((w.shape[0], y.shape[1]))
    for u in range(w.shape[0]):
        seen = w[u] > 0
        c = 1.0 + alpha * w[u]
        p = seen.astype(float)
        cy = y * np.where(seen, c, 1.0)[:, None]
        out[u] = np.linalg.solve(y.T @ cy + reg * np.eye(y.shape[1]), cy.T @ p)
    return out


def test_fold_in_solves_the_ials_normal_equations() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=(12, 4)).astype(np.float32)
    w = sp.random_array((5, 12), density=0.3, random_state=4, format="csr", dtype=np.float32)
    w = sp.vstack([w, sp.csr_array((1, 12), dtype=np.float32)]).tocsr()  # an empty row
    model = IALS(regularization=0.7, alpha=3.0)
    model._set_item_factors(y)
    got = fold_in(w, model._solver, 3.0)
    want = _reference_fold_in(w.toarray().astype(np.float64), y.astype(np.float64), 3.0, 0.7)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.all(got[-1] == 0.0)


def test_ials_confidence_is_one_plus_alpha_times_weight() -> None:
    rows = [("u100", "i900", DAY, "view"), ("u100", "i900", 2 * DAY, "purchase")]
    rows.append(("u101", "i901", DAY, "view"))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event"], orient="row")
    data = Dataset.from_frames(frame, event_weights={"view": 1.0, "purchase": 4.0})
    x = data.user_item_matrix("weight")
    conf = IALS(alpha=2.0, binary=False)._training_matrix(x)
    np.testing.assert_allclose(conf.toarray()[x.toarray() > 0], 1.0 + 2.0 * x.data)
    assert sorted(conf.data.tolist()) == [3.0, 11.0]


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_fold_in_changes_the_answer_towards_the_history(name: str) -> None:
    data = _clusters()
    model = MODELS[name](**SMALL[name]).fit(data)
    first, second = _items(data, ["i900", "i901"]), _items(data, ["i905", "i906"])
    hist = Histories.from_lists([first, second, []], data.n_items)
    unknown = np.full(3, data.n_users + 2, dtype=np.int32)
    top = model.recommend(unknown, 3, histories=hist)
    assert set(top.items[0].tolist()) == set(_items(data, ["i902", "i903", "i904"]))
    assert set(top.items[1].tolist()) == set(_items(data, ["i907", "i908", "i909"]))
    assert np.all(top.items[2] == -1)  # empty history: nothing to fold in
    assert np.all(
        np.isneginf(model.score(unknown[2:], np.arange(data.n_items), histories=hist.rows([2])))
    )
    # A known user's fitted history is replaced by the passed one.
    u100 = data.users.idx_of("u100")
    swapped = model.recommend([u100], 3, histories=hist.rows([1]))
    assert set(swapped.items[0].tolist()) == set(_items(data, ["i907", "i908", "i909"]))


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_unknown_users_get_empty_lists(name: str) -> None:
    data = _clusters()
    top = MODELS[name](**SMALL[name]).fit(data).recommend([data.n_users, -1], k=4)
    assert np.all(top.items == -1)
    assert np.all(np.isneginf(top.scores))


def test_recency_tilts_the_folded_in_user() -> None:
    data = _clusters()
    # Hand-made factors: i900 and i905 are pure tastes, i901 / i906 lean towards them.
    y = np.zeros((data.n_items, 2), dtype=np.float32)
    a, b, c, d = _items(data, ["i900", "i905", "i901", "i906"])
    y[a], y[b], y[c], y[d] = (1.0, 0.0), (0.0, 1.0), (1.0, 0.2), (0.2, 1.0)
    hist = Histories.from_lists([[a, b], [b, a]], data.n_items)  # last item = most recent
    unknown = [data.n_users, data.n_users]
    plain = IALS(half_life_events=None, regularization=0.1, alpha=5.0).fit(data)
    plain._set_item_factors(y)
    tie = plain.score(unknown, [c, d], histories=hist)
    assert tie[0, 0] == pytest.approx(tie[0, 1], rel=1e-4)
    recent = IALS(half_life_events=0.5, regularization=0.1, alpha=5.0).fit(data)
    recent._set_item_factors(y)
    scores = recent.score(unknown, [c, d], histories=hist)
    assert scores[0, 1] > scores[0, 0]  # i905 is recent: its neighbour i906 first
    assert scores[1, 0] > scores[1, 1]


def test_an_event_long_past_still_counts_as_a_positive() -> None:
    # 600 later events at a half-life of 3: 2^-200 underflows float32, yet the old item stays a
    # positive (p = 1, confidence ~1), as it is in the training matrix.
    data = _clusters()
    y = np.zeros((data.n_items, 2), dtype=np.float32)
    a, b = _items(data, ["i900", "i905"])
    y[a], y[b] = (1.0, 0.0), (0.0, 1.0)
    model = IALS(half_life_events=3.0, regularization=0.1, alpha=5.0).fit(data)
    model._set_item_factors(y)
    long_ago = Histories.from_lists([[a] + [b] * 600, [b] * 600], data.n_items)
    scores = model.score([data.n_users] * 2, [a], histories=long_ago)
    assert scores[0, 0] > scores[1, 0] + 0.05


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_same_seed_same_model_other_seed_other_model(name: str) -> None:
    data = _clusters()
    cls = MODELS[name]
    one = cls(random_state=5, **SMALL[name]).fit(data)
    two = cls(random_state=5, **SMALL[name]).fit(data)
    three = cls(random_state=6, **SMALL[name]).fit(data)
    np.testing.assert_array_equal(one.item_factors_, two.item_factors_)
    assert not np.array_equal(one.item_factors_, three.item_factors_)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(one.recommend(users, 3).items, two.recommend(users, 3).items)


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_save_load_identical_scores(name: str, tmp_path: Path) -> None:
    data = _clusters()
    model = MODELS[name](**SMALL[name]).fit(data)
    loaded = CandidateGenerator.load(model.save(tmp_path / name))
    assert type(loaded) is type(model) and loaded.config == model.config
    users = np.arange(-1, data.n_users + 1)
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_similar_items_by_cosine(name: str) -> None:
    data = _clusters()
    model = MODELS[name](**SMALL[name]).fit(data)
    factors = model.item_factors_ if name == "ials" else model.item_factors_[:, :-1]
    assert model.item_factors_.shape[1] == factors.shape[1] + (name == "bpr")  # BPR's bias
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    top = model.similar_items(np.arange(data.n_items), 2)
    np.testing.assert_array_equal(top.items[:, 0], np.argmax(cosine, axis=1))
    np.testing.assert_allclose(top.scores[:, 0], cosine.max(axis=1), rtol=1e-5)
    first = set(_items(data, ["i900", "i901", "i902", "i903", "i904"]))
    assert set(top.items[_items(data, ["i900"])[0]].tolist()) <= first  # same taste


def _random_events(seed: int = 1, n: int = 1500) -> Dataset:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(1000, 1060, n),
            "item_id": rng.integers(5000, 5080, n),
            "timestamp": 1_600_000_000 + rng.integers(0, 10**7, n),
        }
    )
    return Dataset.from_frames(frame)


@pytest.mark.parametrize("learning_rate", [0.5, 50.0])
def test_a_diverged_bpr_names_its_settings(learning_rate: float) -> None:
    # 0.5: factors of 1e10, then implicit's "posv failed ... increase the regularization
    # parameter" (BPR's fold-in has its own); 50: implicit's ModelFitError about NaN factors.
    with pytest.raises(ConfigError, match=r"bpr: .*lower learning_rate"):
        BPR(learning_rate=learning_rate).fit(_random_events())


def test_registered_and_configs() -> None:
    assert GENERATORS["ials"] is IALS and GENERATORS["bpr"] is BPR
    with pytest.raises(ValueError):
        IALS(factorz=3)
    with pytest.raises(ValueError):
        IALS(regularization=0.0)  # a zero ridge can leave fold-in systems singular
    with pytest.raises(ValueError):
        BPR(learning_rate=-1.0)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_defaults_beat_popularity_on_ml100k(name: str, shared_datasets: Path) -> None:
    from recsemble.data import load_dataset
    from recsemble.evaluation import evaluate, prepare, split

    s = split(prepare(load_dataset("ml-100k", data_dir=shared_datasets)), "temporal-user")
    result = evaluate(s, {name: MODELS[name]()})
    assert result.summary(name, 10)["ndcg@10"] > 0.1158


def _request_copy(h: Histories) -> Histories:
    """The same events as request data (not taken from the model's fitted histories)."""
    return Histories(h.indptr, h.items, h.timestamps, h.weights, h.n_items)


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_fitted_users_read_their_factors_solved_once_at_fit(name: str, tmp_path: Path) -> None:
    data = _clusters()
    model = MODELS[name](**SMALL[name]).fit(data)
    assert model.fitted_user_factors_ is not None
    assert model.fitted_user_factors_.shape == (data.n_users, model.item_factors_.shape[1])
    users = np.array([3, 0, 17, data.n_users + 5], dtype=np.int32)  # the last one unknown
    fitted = model.histories_.rows(users)
    assert fitted.origin is model.histories_ and fitted.origin_rows.tolist()[-1] == -1
    read = model.user_factors(fitted)
    solved = model.user_factors(_request_copy(fitted))  # request data: solved now
    np.testing.assert_allclose(read, solved, rtol=1e-5, atol=1e-6)
    assert np.all(read[-1] == 0.0)
    np.testing.assert_allclose(
        model.score_catalog(users, exclude_seen=False),
        model.score_catalog(users, exclude_seen=False, histories=_request_copy(fitted)),
        rtol=1e-5,
        atol=1e-6,
    )
    # Fresh events are never answered from the table.
    more = Histories.from_lists([[0, 1, 2, 5, 6]], data.n_items)
    assert not np.allclose(model.user_factors(more), model.fitted_user_factors_[3])
    loaded = CandidateGenerator.load(model.save(tmp_path / name))
    assert isinstance(loaded, MODELS[name])
    np.testing.assert_array_equal(loaded.fitted_user_factors_, model.fitted_user_factors_)


def test_no_table_when_the_profile_depends_on_the_moment() -> None:
    model = IALS(**SMALL["ials"], half_life_days=3.0).fit(_clusters())
    assert model.fitted_user_factors_ is None
