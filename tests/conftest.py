"""Shared fixtures: tiny known-answer datasets and the location of ../shared/datasets."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsemble.data.dataset import Dataset

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens files not found under {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def tiny() -> Dataset:
    """Users 100-102 and items 900-905 (disjoint id ranges, so idx/id mix-ups show)."""
    rows = [
        ("100", "900", 10, "view"),
        ("100", "901", 20, "view"),
        ("100", "900", 30, "purchase"),
        ("101", "901", 15, "view"),
        ("101", "902", 25, "cart"),
        ("102", "903", 5, "view"),
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event"], orient="row")
    items = pl.DataFrame(
        {
            "item_id": ["900", "901", "902", "903", "904", "905"],
            "title": ["a", "b", "c", "d", "e", "f"],
            "categories": [["x"], ["x", "y"], ["y"], [], ["z"], None],
        }
    )
    users = pl.DataFrame({"user_id": ["100", "101", "102"], "country": ["fr", "de", None]})
    return Dataset.from_frames(
        frame, items, users, event_weights={"view": 1.0, "cart": 3.0, "purchase": 5.0}
    )
