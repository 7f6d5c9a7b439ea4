"""Small value types passed between stages (numpy-only imports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]

#: Item idx used to pad rows of a batch top-k result that have fewer than k items.
PAD_IDX = -1


def _frozen(array: npt.ArrayLike, dtype: npt.DTypeLike) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class ItemList:
    """An ordered list of item idx with scores and named feature columns: every stage's currency.

    Immutable: stages return a new ItemList rather than editing one.
    """

    items: IntArray
    scores: FloatArray
    features: Mapping[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        items = _frozen(self.items, np.int32)
        scores = _frozen(self.scores, np.float32)
        if items.ndim != 1 or scores.shape != items.shape:
            raise ValueError(
                f"ItemList needs 1-d items and scores of one length, got {items.shape} "
                f"and {scores.shape}"
            )
        features = {}
        for name, column in self.features.items():
            col = _frozen(column, np.float32)
            if col.shape != items.shape:
                raise ValueError(f"feature {name!r} has shape {col.shape}, items {items.shape}")
            features[name] = col
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "features", MappingProxyType(features))

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def top(self, k: int) -> ItemList:
        """The first k entries, in their current order."""
        return self.take(np.arange(min(k, len(self))))

    def take(self, positions: npt.ArrayLike) -> ItemList:
        """A new list holding the entries at `positions`, in that order."""
        pos = np.asarray(positions, dtype=np.intp)
        return ItemList(
            self.items[pos],
            self.scores[pos],
            {name: col[pos] for name, col in self.features.items()},
        )

    def sorted(self) -> ItemList:
        """Entries by descending score; ties keep their current order."""
        return self.take(np.argsort(-self.scores, kind="stable"))


@dataclass(frozen=True)
class TopK:
    """Batch top-k result: row r holds the items recommended to the r-th requested user.

    Rows with fewer than k items are padded with PAD_IDX and -inf scores.
    """

    items: IntArray
    scores: FloatArray

    def __post_init__(self) -> None:
        items = _frozen(self.items, np.int32)
        scores = _frozen(self.scores, np.float32)
        if items.ndim != 2 or items.shape != scores.shape:
            raise ValueError(f"TopK needs two equal 2-d arrays, got {items.shape}, {scores.shape}")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def row(self, r: int) -> ItemList:
        """Row r as an ItemList without its padding."""
        keep = self.items[r] != PAD_IDX
        return ItemList(self.items[r][keep], self.scores[r][keep])
