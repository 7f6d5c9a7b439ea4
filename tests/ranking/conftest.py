"""Small synthetic data for the ensemble's tests: timestamps, events, categories, disjoint ids."""

from __future__ import annotations

import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import SyntheticConfig, generate
from recsemble.evaluation.protocol import Split, prepare, split


@pytest.fixture(scope="session")
def small_data() -> Dataset:
    frames = generate(
        SyntheticConfig(seed=7, n_users=300, n_items=120, n_interactions=9_000, n_categories=6)
    )
    return prepare(Dataset.from_frames(*frames, name="small"))


@pytest.fixture(scope="session")
def small_split(small_data: Dataset) -> Split:
    return split(small_data, "temporal-user")
