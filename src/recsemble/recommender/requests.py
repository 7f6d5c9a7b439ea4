"""What a request to the Recommender asks for and what it answers (recsemble.pipeline's
public types, re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Largest k a request may ask for.
MAX_K = 1000


@dataclass(frozen=True)
class RequestOptions:
    k: int = 10
    exclude: tuple[str, ...] = ()  # item ids never to show in this answer
    categories: tuple[str, ...] | None = None  # only items having one of these categories
    rerank: tuple[str, ...] | None = None  # stage names; None = the config's [rerank] stages
    explain: bool = False
    at: int | None = None  # epoch seconds; None = now (time.time())

    def __post_init__(self) -> None:
        for name in ("exclude", "categories", "rerank"):
            if isinstance(getattr(self, name), str):  # its characters would be the entries
                raise TypeError(f"{name} takes a tuple, got the string {getattr(self, name)!r}")


@dataclass(frozen=True)
class Explanation:
    item_id: str
    members: dict[str, float]  # member label -> its contribution, only members that proposed it
    because: list[tuple[str, float]]  # (history item id, weight), strongest first
    text: str


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    title: str | None = None
    explanation: Explanation | None = None  # only with explain=True


@dataclass(frozen=True)
class Answer:
    items: list[Recommendation]
    model_version: str
    # "model" | "session" | "cold:segment" | "cold:trending" | "cold:popular" | "content"
    source: str
    user_known: bool


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
