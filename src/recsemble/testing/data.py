"""Tiny known-answer datasets with disjoint id ranges (users "u100".., items "i900"..), so that
idx / id mix-ups show in tests."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import polars as pl

from recsemble.data.dataset import Dataset

DAY = 86_400
T0 = 1_700_000_000
EVENT_WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0}

#: The two taste clusters of `tiny_dataset` (i911 is in the catalog but never interacted with).
ACTION_ITEMS = ("i900", "i901", "i902", "i903", "i904", "i905")
DRAMA_ITEMS = ("i906", "i907", "i908", "i909", "i910")

# (user, item, day, event, rating). Same-day rows of a user share a timestamp (simultaneous).
_TINY_ROWS = [
    ("u100", "i900", 1, "view", 5.0),
    ("u100", "i901", 1, "view", 4.0),
    ("u100", "i902", 2, "view", 4.0),
    ("u100", "i900", 3, "purchase", 5.0),  # a repeat of an item, as a stronger event
    ("u100", "i905", 4, "view", 3.0),
    ("u101", "i900", 2, "view", 4.0),
    ("u101", "i901", 3, "view", 5.0),
    ("u101", "i903", 3, "cart", 4.0),
    ("u101", "i904", 5, "view", 3.0),
    ("u102", "i901", 1, "view", 5.0),
    ("u102", "i902", 2, "view", 4.0),
    ("u102", "i905", 2, "view", 5.0),
    ("u102", "i903", 6, "purchase", 4.0),
    ("u103", "i900", 4, "view", 3.0),
    ("u103", "i903", 5, "view", 4.0),
    ("u103", "i904", 5, "view", 4.0),
    ("u103", "i906", 7, "view", 2.0),  # one step outside the user's cluster
    ("u104", "i906", 1, "view", 5.0),
    ("u104", "i907", 2, "view", 4.0),
    ("u104", "i908", 2, "view", 4.0),
    ("u104", "i909", 3, "cart", 5.0),
    ("u105", "i907", 2, "view", 4.0),
    ("u105", "i909", 3, "view", 5.0),
    ("u105", "i910", 4, "view", 3.0),
    ("u105", "i907", 5, "purchase", 4.0),
    ("u106", "i906", 3, "view", 4.0),
    ("u106", "i908", 4, "view", 5.0),
    ("u106", "i910", 4, "view", 4.0),
    ("u106", "i909", 6, "view", 3.0),
    ("u107", "i908", 5, "view", 4.0),
    ("u107", "i909", 6, "view", 5.0),
    ("u107", "i906", 6, "cart", 4.0),
]

_TINY_ITEMS = [
    ("i900", "Space Battle", "starships fight a war among the stars", ["action", "scifi"]),
    ("i901", "Laser Squad", "soldiers with lasers fight alien starships", ["action", "scifi"]),
    ("i902", "Robot Uprising", "robots fight their makers in a future war", ["scifi"]),
    ("i903", "Car Chase", "a fast chase with cars and explosions", ["action"]),
    ("i904", "Heist Night", "thieves plan a fast heist with explosions", ["action", "crime"]),
    ("i905", "Mars Colony", "settlers build a colony among the stars", ["scifi"]),
    ("i906", "Quiet Garden", "a family grieves in a quiet garden", ["drama"]),
    ("i907", "Letters Home", "letters of love from a family far away", ["drama", "romance"]),
    ("i908", "Summer Love", "two people fall in love one summer", ["romance"]),
    ("i909", "Old Harbour", "an old family of fishermen and their love", ["drama"]),
    ("i910", "Family Table", "a family dinner full of love and jokes", ["drama", "comedy"]),
    ("i911", "Lost Reel", "a documentary about forgotten film reels", ["documentary"]),
]

_TINY_USERS: dict[str, list[Any]] = {
    "user_id": [f"u{n}" for n in range(100, 109)],  # u108: attributes only, no interactions
    "country": ["fr", "fr", "de", "de", "fr", "de", "fr", "de", "fr"],
    "age": [23, 35, 41, 19, 52, 33, 27, 64, 45],
}


def _items_frame(rows: Sequence[tuple[str, str, str, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "title": [r[1] for r in rows],
            "text": [r[2] for r in rows],
            "categories": [r[3] for r in rows],
            "created_at": [T0 - 30 * DAY] * len(rows),
        },
        schema_overrides={"categories": pl.List(pl.String)},
    )


def _interactions_frame(
    rows: Sequence[tuple[str, str, int, str, float]],
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [T0 + r[2] * DAY for r in rows],
            "event": [r[3] for r in rows],
            "value": [r[4] for r in rows],
        },
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "timestamp": pl.Int64,
            "event": pl.String,
            "value": pl.Float32,
        },
    )


@cache
def tiny_dataset() -> Dataset:
    """9 users (u100..u108; u108 has no events), 12 items (i900..i911; i911 has no events).

    Two taste clusters: u100-u103 watch ACTION_ITEMS, u104-u107 watch DRAMA_ITEMS. It has
    repeated (user, item) pairs, simultaneous events, view/cart/purchase events, ratings, item
    title/text/categories and user country/age.
    """
    return Dataset.from_frames(
        _interactions_frame(_TINY_ROWS),
        _items_frame(_TINY_ITEMS),
        pl.DataFrame(_TINY_USERS),
        event_weights=EVENT_WEIGHTS,
        name="tiny",
    )


@cache
def empty_dataset(with_catalog: bool = True) -> Dataset:
    """No interactions; with_catalog: the tiny dataset's users and items are still known."""
    items = _items_frame(_TINY_ITEMS) if with_catalog else None
    users = pl.DataFrame(_TINY_USERS) if with_catalog else None
    return Dataset.from_frames(
        _interactions_frame([]), items, users, event_weights=EVENT_WEIGHTS, name="empty"
    )


@cache
def single_item_dataset() -> Dataset:
    """Three users who all interacted with the one item of the catalog."""
    rows = [
        ("u100", "i900", 1, "view", 4.0),
        ("u101", "i900", 2, "view", 5.0),
        ("u102", "i900", 2, "purchase", 3.0),
    ]
    users = {key: values[:3] for key, values in _TINY_USERS.items()}
    return Dataset.from_frames(
        _interactions_frame(rows),
        _items_frame(_TINY_ITEMS[:1]),
        pl.DataFrame(users),
        event_weights=EVENT_WEIGHTS,
        name="single-item",
    )
