from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.cosine import binary, row_sq_norms, term_stats, weigh
from recsemble.generators.history import Histories
from recsemble.generators.knn import (
    ItemKNN,
    ItemKNNConfig,
    ItemKNNRecent,
    UserKNN,
    item_similarities,
)

# Users u100..u103, items i900..i903 (disjoint id ranges). Item columns over users:
# i900 = {u100, u101}, i901 = {u100, u101, u102}, i902 = {u101, u102}, i903 = {u103}.
ROWS = [
    ("u100", "i900", 1),
    ("u100", "i901", 2),
    ("u101", "i900", 1),
    ("u101", "i901", 2),
    ("u101", "i902", 3),
    ("u102", "i901", 1),
    ("u102", "i902", 2),
    ("u103", "i903", 1),
]
COS_01 = 2 / math.sqrt(6)  # i900 . i901 = 2 shared users; norms sqrt(2), sqrt(3)
COS_02 = 1 / 2  # one shared user; norms sqrt(2), sqrt(2)
COS_12 = 2 / math.sqrt(6)


def _data(rows: list[tuple[str, str, int]]) -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


@pytest.fixture
def toy() -> Dataset:
    return _data(ROWS)


def _idx(data: Dataset, *ids: str) -> list[int]:
    return [data.items.idx_of(i) for i in ids]


def _ids(data: Dataset, items: np.ndarray) -> list[str]:
    return [data.items.id_of(int(i)) for i in items if i >= 0]


def _sim(model: ItemKNN, data: Dataset) -> np.ndarray:
    """Similarity matrix in item-id order i900..i903."""
    order = _idx(data, "i900", "i901", "i902", "i903")
    return model.similarity_.toarray()[np.ix_(order, order)]


def test_item_cosine_known_answer(toy: Dataset) -> None:
    model = ItemKNN(weighting="none", shrink=0.0).fit(toy)
    want = np.array(
        [
            [0, COS_01, COS_02, 0],
            [COS_01, 0, COS_12, 0],
            [COS_02, COS_12, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(_sim(model, toy), want, rtol=1e-6)
    u100 = toy.users.idx_of("u100")
    top = model.recommend([u100], k=3)
    # i900, i901 seen; i903 shares no user with the history: not a candidate at all.
    assert _ids(toy, top.items[0]) == ["i902"]
    assert top.scores[0, 0] == pytest.approx(COS_02 + COS_12, rel=1e-6)
    scores = model.score([u100], _idx(toy, "i900", "i903"), histories=None)
    assert scores[0, 0] == pytest.approx(COS_01, rel=1e-6)  # no self-similarity
    assert scores[0, 1] == -np.inf


def test_shrinkage_damps_similarities(toy: Dataset) -> None:
    shrunk = _sim(ItemKNN(weighting="none", shrink=1.0).fit(toy), toy)
    assert shrunk[0, 1] == pytest.approx(2 / (math.sqrt(6) + 1), rel=1e-6)
    assert shrunk[0, 2] == pytest.approx(1 / (2 + 1), rel=1e-6)


def test_min_support_drops_pairs_with_few_shared_users(toy: Dataset) -> None:
    sim = _sim(ItemKNN(weighting="none", shrink=0.0, min_support=2).fit(toy), toy)
    assert sim[0, 2] == 0.0 == sim[2, 0]  # i900 and i902 share only u101
    assert sim[0, 1] == pytest.approx(COS_01, rel=1e-6)


def test_asymmetric_cosine(toy: Dataset) -> None:
    # alpha = 1: S[i, j] = dot / |i|^2, the share of history item i's users who also have j.
    sim = _sim(ItemKNN(weighting="none", shrink=0.0, alpha=1.0).fit(toy), toy)
    assert sim[0, 1] == pytest.approx(2 / 2)
    assert sim[1, 0] == pytest.approx(2 / 3)


def _heavy_light() -> Dataset:
    """Item a co-occurs with b through a heavy user and with c through a light one."""
    heavy = [("u100", item, 1) for item in ("a", "b", "f1", "f2", "f3", "f4", "f5")]
    return _data([*heavy, ("u101", "a", 1), ("u101", "c", 1)])


@pytest.mark.parametrize("weighting", ["bm25", "tfidf"])
def test_weighting_discounts_heavy_users(weighting: str) -> None:
    data = _heavy_light()
    a, b, c = _idx(data, "a", "b", "c")
    plain = ItemKNN(weighting="none", shrink=0.0).fit(data).similarity_.toarray()
    assert plain[a, b] == pytest.approx(plain[a, c]) == pytest.approx(1 / math.sqrt(2))
    sim = ItemKNN(shrink=0.0, weighting=weighting).fit(data).similarity_.toarray()
    n_items, df_heavy, df_light = 8, 7, 2
    if weighting == "bm25":
        idf_h = math.log1p((n_items - df_heavy + 0.5) / (df_heavy + 0.5))
        idf_l = math.log1p((n_items - df_light + 0.5) / (df_light + 0.5))
    else:
        idf_h = math.log((1 + n_items) / (1 + df_heavy)) + 1
        idf_l = math.log((1 + n_items) / (1 + df_light)) + 1
    # a = (idf_h, idf_l) * t_a, b = (idf_h, 0) * t_b: the per-item BM25 tf factors cancel.
    assert sim[a, b] == pytest.approx(idf_h / math.hypot(idf_h, idf_l), rel=1e-5)
    assert sim[a, c] == pytest.approx(idf_l / math.hypot(idf_h, idf_l), rel=1e-5)
    assert sim[a, c] > sim[a, b]


def test_top_neighbour_pruning(toy: Dataset) -> None:
    target = _sim(ItemKNN(weighting="none", shrink=0.0, neighbors=1).fit(toy), toy)
    # Each candidate (column) keeps its single best history item.
    assert np.count_nonzero(target, axis=0).tolist() == [1, 1, 1, 0]
    assert target[1, 2] == pytest.approx(COS_12) and target[0, 2] == 0.0
    source = _sim(ItemKNN(weighting="none", shrink=0.0, neighbors=1, prune="source").fit(toy), toy)
    assert np.count_nonzero(source, axis=1).tolist() == [1, 1, 1, 0]
    assert source[0, 1] == pytest.approx(COS_01) and source[0, 2] == 0.0


def test_pruning_ties_go_to_the_lower_item() -> None:
    # c shares one user with a and one with b: sim(c, a) == sim(c, b) exactly.
    data = _data([("u1", "a", 1), ("u1", "c", 2), ("u2", "b", 1), ("u2", "c", 2)])
    a, b, c = _idx(data, "a", "b", "c")
    lower, upper = min(a, b), max(a, b)
    for prune in ("target", "source"):
        model = ItemKNN(weighting="none", neighbors=1, prune=prune).fit(data)
        sim = model.similarity_.toarray()
        kept = sim[:, c] if prune == "target" else sim[c, :]  # c's neighbour list
        assert kept[lower] > 0 and kept[upper] == 0, prune


def _pruned_by_sorting(train: sp.csr_array, config: ItemKNNConfig) -> np.ndarray:
    """item_similarities the slow way: every pair's similarity (the same float32 operations),
    then each candidate's (target) or history item's (source) best `neighbors`, ties to the
    lower item idx."""
    docs = sp.csr_array(train.T).astype(np.float32)
    weighted = weigh(docs, term_stats(docs, config.weighting), config)
    sq = row_sq_norms(weighted)
    a = config.alpha if config.prune == "source" else 1.0 - config.alpha
    dots = sp.csr_array(weighted @ weighted.T)
    den = np.repeat((sq**a).astype(np.float32), np.diff(dots.indptr))
    den *= (sq ** (1.0 - a)).astype(np.float32)[dots.indices]
    den += np.float32(config.shrink)
    sims = sp.csr_array((dots.data / den, dots.indices, dots.indptr), dots.shape).toarray()
    support = (binary(docs) @ binary(docs).T).toarray()
    sims[support < config.min_support] = 0.0
    np.fill_diagonal(sims, 0.0)
    out = np.zeros_like(sims)
    for row in range(sims.shape[0]):
        best = np.lexsort((np.arange(sims.shape[1]), -sims[row]))[: config.neighbors]
        best = best[sims[row, best] > 0]
        out[row, best] = sims[row, best]
    return out.T if config.prune == "target" else out


@pytest.mark.parametrize(
    "config",
    [
        {"neighbors": 3},
        {"neighbors": 2, "weighting": "none", "shrink": 0.0},
        {"neighbors": 4, "weighting": "bm25", "prune": "source", "alpha": 0.3},
        {"neighbors": 3, "min_support": 2, "alpha": 0.8},
    ],
)
def test_item_similarities_equal_a_full_sort(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(len(config))
    # Few users and many one-user items: many equal similarities, also at the cut.
    train = sp.random_array((12, 40), density=0.15, rng=rng, format="csr", dtype=np.float32)
    train.data[:] = 1.0
    cfg = ItemKNNConfig(**config)
    got = item_similarities(sp.csr_array(train), cfg).toarray()
    np.testing.assert_array_equal(got, _pruned_by_sorting(sp.csr_array(train), cfg))


def test_similar_items(toy: Dataset) -> None:
    model = ItemKNN(weighting="none", shrink=0.0).fit(toy)
    top = model.similar_items(_idx(toy, "i900", "i903"), k=3)
    assert _ids(toy, top.items[0]) == ["i901", "i902"]
    np.testing.assert_allclose(top.scores[0, :2], [COS_01, COS_02], rtol=1e-6)
    assert top.items[1].tolist() == [-1, -1, -1]  # no neighbours at all


def test_fold_in_and_unknown_users(toy: Dataset) -> None:
    model = ItemKNN(weighting="none", shrink=0.0).fit(toy)
    u103 = toy.users.idx_of("u103")
    assert model.recommend([u103], k=3).items[0].tolist() == [-1, -1, -1]
    i900, i903 = _idx(toy, "i900", "i903")
    now = Histories.from_lists([[i903, i900]], toy.n_items)
    top = model.recommend([u103], k=3, histories=now)
    assert _ids(toy, top.items[0]) == ["i901", "i902"]  # the new i900 event brings neighbours
    unknown = toy.n_users + 5
    assert model.recommend([unknown], k=2).items[0].tolist() == [-1, -1]
    assert _ids(toy, model.recommend([unknown], k=2, histories=now).items[0]) == ["i901", "i902"]


def test_recent_variant_favours_the_latest_items() -> None:
    # x ~ p and y ~ q equally; the user saw x long ago and y last.
    rows = [("u100", "x", 1), ("u100", "p", 1), ("u101", "y", 1), ("u101", "q", 1)]
    data = _data([*rows, ("u102", "x", 1), ("u102", "y", 2)])
    p, q = _idx(data, "p", "q")
    assert p < q  # so the plain model's tie goes to p
    u102 = data.users.idx_of("u102")
    plain = ItemKNN().fit(data).recommend([u102], k=2)
    assert plain.items[0].tolist() == [p, q] and plain.scores[0, 0] == plain.scores[0, 1]
    recent = ItemKNNRecent(half_life_events=1.0).fit(data).recommend([u102], k=2)
    assert recent.items[0].tolist() == [q, p]
    assert recent.scores[0, 1] == pytest.approx(recent.scores[0, 0] / 2)


def test_user_knn_known_answer(toy: Dataset) -> None:
    model = UserKNN(weighting="none", shrink=0.0).fit(toy)
    u100 = toy.users.idx_of("u100")
    # Neighbours of {i900, i901}: u101 (cos 2/sqrt6), u102 (cos 1/2); u100 itself is left out.
    top = model.recommend([u100], k=2)
    assert _ids(toy, top.items[0]) == ["i902"]
    assert top.scores[0, 0] == pytest.approx(2 / math.sqrt(6) + 0.5, rel=1e-6)
    one = UserKNN(weighting="none", shrink=0.0, neighbors=1).fit(toy).recommend([u100], k=2)
    assert one.scores[0, 0] == pytest.approx(2 / math.sqrt(6), rel=1e-6)
    shrunk = UserKNN(weighting="none", shrink=1.0).fit(toy).recommend([u100], k=1)
    assert shrunk.scores[0, 0] == pytest.approx(2 / (math.sqrt(6) + 1) + 1 / 3, rel=1e-6)


def test_user_knn_fold_in_and_unknown_users(toy: Dataset) -> None:
    model = UserKNN(weighting="none", shrink=0.0).fit(toy)
    unknown = toy.n_users + 3
    assert model.recommend([unknown, -1], k=2).items.tolist() == [[-1, -1], [-1, -1]]
    i903, i902 = _idx(toy, "i903", "i902")
    now = Histories.from_lists([[i902]], toy.n_items)
    top = model.recommend([unknown], k=3, histories=now)
    assert _ids(toy, top.items[0]) == ["i901", "i900"]  # i901: u101 + u102, i900: u101 only
    u103 = toy.users.idx_of("u103")
    assert model.recommend([u103], k=2).items[0].tolist() == [-1, -1]
    grown = Histories.from_lists([[i903, i902]], toy.n_items)
    assert _ids(toy, model.recommend([u103], k=1, histories=grown).items[0]) == ["i901"]


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (ItemKNN, {"weighting": "bm25", "shrink": 2.0}),
        (ItemKNN, {"prune": "source", "alpha": 0.3, "min_support": 2}),
        (ItemKNNRecent, {}),
        (UserKNN, {"weighting": "tfidf", "min_support": 2}),
    ],
)
def test_save_load_gives_identical_scores(
    toy: Dataset, tmp_path: Path, cls: type[CandidateGenerator], config: dict[str, Any]
) -> None:
    model = cls(**config).fit(toy)
    loaded = CandidateGenerator.load(model.save(tmp_path / "m"))
    assert type(loaded) is cls and loaded.config == model.config
    users = np.arange(toy.n_users + 1)
    items = np.arange(toy.n_items)
    np.testing.assert_array_equal(loaded.score(users, items), model.score(users, items))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"generator": "no-such"}, "holds a 'no-such' generator, not a known generator"),
        ({"config": {"neighbours": 3}}, "malformed manifest .ValidationError"),
        ({"n_users": None}, "malformed manifest .TypeError"),
    ],
)
def test_a_damaged_manifest_is_a_data_error_naming_the_folder(
    toy: Dataset, tmp_path: Path, edit: dict[str, Any], message: str
) -> None:
    # An unknown generator raised AttributeError (CandidateGenerator has no name), the others
    # a pydantic ValidationError or TypeError without the folder.
    folder = ItemKNN().fit(toy).save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **edit}))
    with pytest.raises(DataError, match=f"{folder}: {message}"):
        CandidateGenerator.load(folder)
    with pytest.raises(DataError, match="not a folder"):
        CandidateGenerator.load(folder / "arrays.npz")  # was NotADirectoryError


def test_saving_onto_a_file_is_a_data_error(toy: Dataset, tmp_path: Path) -> None:
    taken = tmp_path / "model.txt"
    taken.write_text("mine")
    with pytest.raises(DataError, match="is a file, not a folder"):  # was FileExistsError
        ItemKNN().fit(toy).save(taken)
    assert taken.read_text() == "mine"


def test_registry_and_config_validation() -> None:
    assert GENERATORS["itemknn"] is ItemKNN
    assert GENERATORS["itemknn-recent"] is ItemKNNRecent
    assert GENERATORS["userknn"] is UserKNN
    assert ItemKNNRecent().config.half_life_events is not None
    assert ItemKNN().config.half_life_events is None
    with pytest.raises(ValidationError):
        ItemKNN(neighbors=0)
    with pytest.raises(ValidationError):
        UserKNN(weighting="idf")
    with pytest.raises(ValidationError):
        ItemKNN(neighbours=10)


@pytest.mark.realdata
def test_itemknn_beats_popularity_on_ml100k(shared_datasets: Path) -> None:
    from recsemble.data import load_dataset
    from recsemble.evaluation import evaluate, prepare, split

    data = split(prepare(load_dataset("ml-100k", data_dir=shared_datasets)), "temporal-user")
    ndcg = evaluate(data, {"m": ItemKNN()}).summary("m", 10)["ndcg@10"]
    assert ndcg > 0.1158 + 0.04  # popularity's 0.1158, by a clear margin
