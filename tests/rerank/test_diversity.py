"""MMR, DPP, category caps and calibrated lists: behaviour, knob extremes and properties."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.base import Query, Reranker
from recsemble.rerank.calibrated import Calibrated
from recsemble.rerank.diversity import DPP, MMR, CategoryCap, greedy_dpp
from recsemble.types import ItemList

# Items i900..i911: two "near duplicate" families (Action, Drama) and a few singletons.
CATEGORIES: list[list[str]] = [
    ["Action"], ["Action"], ["Action"], ["Action"],
    ["Drama"], ["Drama"], ["Drama"],
    ["Comedy"], ["Horror"], ["Action", "Drama"], [], ["Comedy", "Drama"],
]  # fmt: skip
N_ITEMS = len(CATEGORIES)


def _catalog() -> Dataset:
    item_ids = [f"i{900 + i}" for i in range(N_ITEMS)]
    events = pl.DataFrame(
        {
            "user_id": [f"u{100 + i % 3}" for i in range(N_ITEMS)],
            "item_id": item_ids,
            "timestamp": list(range(N_ITEMS)),
        }
    )
    titles = [f"{'space laser' if 'Action' in c else 'family love'} film {i}" for i, c in
              enumerate(CATEGORIES)]  # fmt: skip
    items = pl.DataFrame({"item_id": item_ids, "categories": CATEGORIES, "title": titles})
    return Dataset.from_frames(events, items)


CATALOG = _catalog()
# The ranker's favourites are all Action: items 0..3 on top.
RANKED = ItemList(np.arange(N_ITEMS), np.linspace(1.0, 0.0, N_ITEMS))


def _fitted(cls: type[Reranker], **config: Any) -> Reranker:
    return cls(cls.Config.model_validate(config)).fit(CATALOG)


def _categories(items: np.ndarray) -> list[str]:
    return [c for i in items for c in CATEGORIES[int(i)]]


def test_mmr_extremes() -> None:
    plain = _fitted(MMR, **{"lambda": 1.0}).rerank(Query(), RANKED, 4)
    np.testing.assert_array_equal(plain.items, [0, 1, 2, 3])
    diverse = _fitted(MMR, **{"lambda": 0.3}).rerank(Query(), RANKED, 4)
    assert diverse.items[0] == 0  # the best item still leads
    assert len(set(_categories(diverse.items))) >= 3  # not four Action films
    # Scores are the ranker's, unchanged, only reordered.
    np.testing.assert_array_equal(diverse.scores, RANKED.scores[diverse.items])


def test_dpp_extremes_and_diversity() -> None:
    plain = _fitted(DPP, theta=1.0).rerank(Query(), RANKED, 4)
    np.testing.assert_array_equal(plain.items, [0, 1, 2, 3])
    diverse = _fitted(DPP, theta=0.5).rerank(Query(), RANKED, 4)
    assert diverse.items[0] == 0
    assert len(set(_categories(diverse.items))) >= 3


def brute_force_logdet_best(rel: np.ndarray, vectors: np.ndarray, theta: float, k: int) -> float:
    alpha = theta / (2 * (1 - theta))
    q = np.exp(alpha * (rel - 1))
    sim = 0.9 * vectors @ vectors.T
    np.fill_diagonal(sim, 1.0)
    kernel = q[:, None] * sim * q[None, :]
    return max(
        np.linalg.slogdet(kernel[np.ix_(s, s)])[1]
        for s in map(list, itertools.combinations(range(rel.size), k))
    )


def test_greedy_dpp_first_steps_are_exact_greedy() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(7, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rel = rng.uniform(size=7)
    picks = greedy_dpp(rel, vectors, 3, 0.6, 0.1)
    # Brute-force greedy: each step adds the item that maximises log det of the chosen set.
    alpha = 0.6 / (2 * 0.4)
    q = np.exp(alpha * (rel - 1))
    sim = 0.9 * vectors @ vectors.T
    np.fill_diagonal(sim, 1.0)
    kernel = q[:, None] * sim * q[None, :]
    chosen: list[int] = []
    for _ in range(3):
        gains = {
            i: np.linalg.slogdet(kernel[np.ix_([*chosen, i], [*chosen, i])])[1]
            for i in range(7)
            if i not in chosen
        }
        chosen.append(max(gains, key=lambda i: gains[i]))
    np.testing.assert_array_equal(picks, chosen)
    # Greedy MAP is within reach of the exact optimum on a tiny problem.
    best = brute_force_logdet_best(rel, vectors, 0.6, 3)
    got = np.linalg.slogdet(kernel[np.ix_(chosen, chosen)])[1]
    assert got >= best - 0.5


def test_content_and_embedding_similarity() -> None:
    for source in ("content", "embedding"):
        stage = _fitted(MMR, **{"lambda": 0.2, "similarity": source, "dims": 4})
        out = stage.rerank(Query(), RANKED, 5)
        assert len(out) == 5 and len(set(out.items.tolist())) == 5


def _jaccard(a: list[str], b: list[str]) -> float:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 0.0


def test_jaccard_measure_is_the_category_sets_jaccard() -> None:
    stage = _fitted(MMR, **{"lambda": 0.0, "measure": "jaccard"})
    assert isinstance(stage, MMR)
    vectors = stage.vectors_.astype(np.float64)
    for best in range(N_ITEMS):
        got = stage._similarity_to(vectors, stage.set_sizes_, best)
        expected = [_jaccard(CATEGORIES[i], CATEGORIES[best]) for i in range(N_ITEMS)]
        np.testing.assert_allclose(got, expected)
    # Relevance off: each pick has the least mean Jaccard to those chosen (ties: input order).
    out = stage.rerank(Query(), RANKED, 4).items.tolist()
    assert out[:3] == [0, 4, 7]  # Action, Drama, Comedy
    assert out[3] == 8  # Horror: no shared category, where "Comedy, Drama" would share one


def test_jaccard_measure_needs_category_sets() -> None:
    with pytest.raises(ValidationError, match="jaccard"):
        MMR.Config.model_validate({"measure": "jaccard", "similarity": "embedding"})


def test_category_cap() -> None:
    capped = _fitted(CategoryCap, max_per_category=2).rerank(Query(), RANKED, 6)
    counts: dict[str, int] = {}
    for category in _categories(capped.items):
        counts[category] = counts.get(category, 0) + 1
    assert max(counts.values()) <= 2
    assert capped.items.tolist() == sorted(capped.items.tolist())  # input order kept
    filled = _fitted(CategoryCap, max_per_category=1, fill=True).rerank(Query(), RANKED, 10)
    assert len(filled) == 10


def test_calibrated_follows_history_mix() -> None:
    stage = _fitted(Calibrated, **{"lambda": 0.9})
    drama_fan = Query(user=0, history=np.array([4, 5, 6, 11], dtype=np.int32))
    out = stage.rerank(drama_fan, RANKED, 4)
    assert sum("Drama" in CATEGORIES[int(i)] for i in out.items) >= 3
    assert stage.rerank(drama_fan, RANKED, 4).items.tolist() == out.items.tolist()
    unchanged = _fitted(Calibrated, **{"lambda": 0.0}).rerank(drama_fan, RANKED, 4)
    np.testing.assert_array_equal(unchanged.items, [0, 1, 2, 3])
    no_history = stage.rerank(Query(), RANKED, 4)  # nothing to calibrate to: input order
    np.testing.assert_array_equal(no_history.items, [0, 1, 2, 3])


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        MMR.Config.model_validate({"lambda": 1.5})
    with pytest.raises(ValidationError):
        DPP.Config.model_validate({"theta": 0.5, "colour": "red"})
    with pytest.raises(ValidationError):
        CategoryCap.Config.model_validate({"max_per_category": 0})


def test_category_similarity_needs_categories() -> None:
    events = pl.DataFrame({"user_id": ["u1"], "item_id": ["i9"], "timestamp": [1]})
    with pytest.raises(ConfigError, match="categories"):
        MMR().fit(Dataset.from_frames(events))
    with pytest.raises(ConfigError, match="categories"):
        Calibrated().fit(Dataset.from_frames(events))


STAGES = [
    (MMR, {"lambda": 0.5}),
    (DPP, {"theta": 0.5}),
    (CategoryCap, {"max_per_category": 1}),
    (Calibrated, {"lambda": 0.7}),
    (MMR, {"lambda": 0.0, "similarity": "embedding", "dims": 3}),
    (MMR, {"lambda": 0.3, "measure": "jaccard"}),
]
FITTED = [_fitted(cls, **cfg) for cls, cfg in STAGES]


@given(
    stage=st.sampled_from(FITTED),
    items=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=N_ITEMS),
    scores=st.lists(st.floats(-5, 5), min_size=N_ITEMS, max_size=N_ITEMS),
    k=st.integers(1, 14),
    history=st.lists(st.integers(0, N_ITEMS - 1), max_size=6),
)
@settings(max_examples=150, deadline=None)
def test_properties(
    stage: Reranker, items: list[int], scores: list[float], k: int, history: list[int]
) -> None:
    given_list = ItemList(np.array(items, dtype=np.int32), np.array(scores[: len(items)]))
    query = Query(user=1, history=np.array(history, dtype=np.int32))
    out = stage.rerank(query, given_list, k)
    assert set(out.items.tolist()) <= set(items)
    assert len(set(out.items.tolist())) == len(out)
    assert len(out) <= k
    if not isinstance(stage, CategoryCap):
        assert len(out) == min(k, len(items))
    again = stage.rerank(query, given_list, k)
    np.testing.assert_array_equal(out.items, again.items)
