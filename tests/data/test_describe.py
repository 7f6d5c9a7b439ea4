"""describe / format_description on a known-answer dataset and on the synthetic demo."""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.describe import describe, format_description
from recsemble.data.synthetic import SyntheticConfig, load_synthetic

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400


@pytest.fixture
def small() -> Dataset:
    rows = [
        ("u1", "i1", T0, "view"),
        ("u1", "i1", T0 + 10, "purchase"),
        ("u1", "i2", T0 + 20, "view"),
        ("u2", "i1", T0 + 2 * DAY, "view"),
        ("u2", "i3", T0 + 2 * DAY + 5, "cart"),
        ("u3", "i1", T0 + 9 * DAY, "view"),
    ]
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event"], orient="row")
    items = pl.DataFrame({"item_id": ["i1", "i2", "i3", "i4", "i5"]})
    users = pl.DataFrame({"user_id": ["u1", "u2", "u3", "u4"]})
    weights = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
    return Dataset.from_frames(inter, items, users, event_weights=weights, name="small")


def test_known_answers(small: Dataset) -> None:
    d = describe(small)
    assert (d["users"], d["items"], d["interactions"]) == (4, 5, 6)
    assert (d["active_users"], d["active_items"], d["distinct_pairs"]) == (3, 3, 5)
    assert d["density"] == pytest.approx(5 / 20) and d["sparsity"] == pytest.approx(0.75)
    assert d["events"] == {"view": 4, "purchase": 1, "cart": 1}
    assert d["time_range"] == {"start": "2024-01-01", "end": "2024-01-10", "days": 9.0}
    assert d["interactions_per_user"] == pytest.approx(
        {"min": 0, "median": 1.5, "mean": 1.5, "p90": 2.7, "max": 3}
    )
    assert d["interactions_per_item"] == pytest.approx(
        {"min": 0, "median": 1, "mean": 1.2, "p90": 2.8, "max": 4}
    )
    assert d["history_length"] == {"0": 1, "1-4": 3, "5-19": 0, "20-99": 0, "100+": 0}
    assert d["top_20pct_items_share"] == pytest.approx(4 / 6)  # top 1 of 5 items
    json.dumps(d)  # plain Python values only


def test_format_is_a_readable_table(small: Dataset) -> None:
    text = format_description(describe(small))
    assert text.splitlines()[0] == "Dataset small"
    for needle in ("users", "2024-01-01 .. 2024-01-10", "purchase", "per item", "1-4", "66.7%"):
        assert needle in text


def test_empty_dataset() -> None:
    empty = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64})
    d = describe(Dataset.from_frames(empty))
    assert d["interactions"] == 0 and d["time_range"] is None
    assert "Dataset (unnamed)" in format_description(d)


def test_synthetic_demo_summary() -> None:
    d = describe(
        load_synthetic(config=SyntheticConfig(n_users=500, n_items=300, n_interactions=20_000))
    )
    assert sum(d["history_length"].values()) == d["users"] == 500
    assert set(d["events"]) == {"view", "cart", "purchase"}
    assert d["top_20pct_items_share"] > 0.5  # popularity is concentrated
    assert d["interactions_per_user"]["p90"] > d["interactions_per_user"]["median"]
