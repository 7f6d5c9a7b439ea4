"""evaluate() called from Python: bad cutoffs and lookups are named."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.evaluation import Split, evaluate, prepare, split
from recsemble.generators import GENERATORS


def _holdout() -> Split:
    rng = np.random.default_rng(0)
    n = 1500
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(1000, 1060, n),
            "item_id": rng.integers(5000, 5060, n),
            "timestamp": 1_600_000_000 + rng.integers(0, 10**7, n),
        }
    )
    return split(prepare(Dataset.from_frames(frame)), "temporal-user")


def test_summary_names_what_was_evaluated() -> None:
    result = evaluate(_holdout(), {"pop": GENERATORS["pop"]()}, ks=[5])
    assert result.summary("pop", 5)["ndcg@5"] >= 0
    with pytest.raises(KeyError, match=r"no model 'trending' was evaluated; models: \['pop'\]"):
        result.summary("trending", 5)  # was KeyError: 'trending'
    with pytest.raises(KeyError, match=r"k=10 was not evaluated; evaluated: \[5\]"):
        result.summary("pop", 10)  # was KeyError: 10


def test_a_fractional_cutoff_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"k must be an integer, got 10\.5"):
        evaluate(_holdout(), {"pop": GENERATORS["pop"]()}, ks=[10.5])  # type: ignore[list-item]
