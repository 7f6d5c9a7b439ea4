"""What rerankers read about the catalog: attribute rules, item ages, category vectors.

Rules are data, not code, so they can live in the TOML config: `{attribute = "price", op = "<",
value = 20}`, `{attribute = "categories", op = "not in", value = ["Horror"]}`. A list attribute
(categories) matches "in" when it shares any value with the rule's list and "==" when it
contains the value. An item whose attribute is missing matches no rule except "!=" / "not in".
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.base import SECONDS_PER_DAY, RerankerConfig

Bool = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
_NEGATIVE_OPS = ("!=", "not in")


class Rule(RerankerConfig):
    """One condition on an item attribute column."""

    attribute: str
    op: Op
    value: float | str | bool | list[float] | list[str]


def _column(dataset: Dataset, attribute: str) -> pl.Series:
    attrs = dataset.item_attributes
    if attribute not in attrs.columns:
        raise ConfigError(
            f"rule attribute {attribute!r} is not an item attribute; "
            f"this catalog has {', '.join(attrs.columns)}"
        )
    return attrs[attribute]


def _scalar_mask(column: pl.Series, op: Op, value: Any) -> pl.Series:
    hit: pl.Series
    if op in ("in", "not in"):
        values = value if isinstance(value, list) else [value]
        hit = column.is_in(values)
    else:
        if isinstance(value, list):
            raise ConfigError(f"rule op {op!r} takes one value, got a list {value!r}")
        _check_ordering(column, op, value)
        compare = {
            "==": column.__eq__,
            "!=": column.__ne__,
            "<": column.__lt__,
            "<=": column.__le__,
            ">": column.__gt__,
            ">=": column.__ge__,
        }[op]
        try:
            hit = compare(value)
        except (pl.exceptions.PolarsError, TypeError) as exc:
            raise ConfigError(f"rule {column.name} {op} {value!r}: {exc}") from None
        if op == "!=":
            return hit.fill_null(True)
    return ~hit.fill_null(False) if op == "not in" else hit.fill_null(False)


def _check_ordering(column: pl.Series, op: Op, value: Any) -> None:
    """<, <=, >, >= between a number and text would compare text ("100" < "20")."""
    if op in ("==", "!="):
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and column.dtype == pl.String:
        raise ConfigError(
            f"rule {column.name} {op} {value!r}: {column.name!r} holds text, which would be "
            "compared as text; convert the attribute to numbers"
        )


def _list_mask(column: pl.Series, op: Op, value: Any) -> pl.Series:
    values = value if isinstance(value, list) else [value]
    if op not in ("==", "!=", "in", "not in"):
        raise ConfigError(f"list attribute {column.name!r} takes ==, !=, in or not in, not {op}")
    hit: pl.Series = column.list.eval(pl.element().is_in(values)).list.any().fill_null(False)
    return ~hit if op in _NEGATIVE_OPS else hit


def rule_mask(dataset: Dataset, rule: Rule) -> Bool:
    """Which items (by idx) satisfy the rule."""
    column = _column(dataset, rule.attribute)
    if isinstance(column.dtype, pl.List):
        mask = _list_mask(column, rule.op, rule.value)
    else:
        mask = _scalar_mask(column, rule.op, rule.value)
    out: Bool = mask.to_numpy().astype(np.bool_)
    return out


def all_rules_mask(dataset: Dataset, rules: list[Rule]) -> Bool:
    """Items satisfying every rule (every item when there are none)."""
    mask = np.ones(dataset.n_items, dtype=np.bool_)
    for rule in rules:
        mask &= rule_mask(dataset, rule)
    return mask


def check_event_types(dataset: Dataset, chosen: list[str], setting: str) -> None:
    """A ConfigError naming the known types when `chosen` holds one the data never had (the
    dataset's declared event weights count as known: a split may lack rare types)."""
    known = set(dataset.interactions["event"].unique().to_list()) | set(dataset.event_weights)
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise ConfigError(
            f"{setting} {unknown} never occur in this dataset; its event types are {sorted(known)}"
        )


def first_interactions(dataset: Dataset) -> F64:
    """Epoch seconds of each item's first interaction (NaN: none)."""
    first = np.full(dataset.n_items, np.inf)
    if dataset.n_interactions:
        np.minimum.at(
            first, dataset.column("item_idx"), dataset.column("timestamp").astype(np.float64)
        )
    first[np.isinf(first)] = np.nan
    return first


def item_birth(dataset: Dataset, first: F64 | None = None) -> F64:
    """Epoch seconds each item appeared: created_at, else its first interaction (NaN: neither).
    first: first_interactions(dataset) when known, so that a catalog change (a PUT while
    serving) does not read every interaction again."""
    created = dataset.item_attributes["created_at"].cast(pl.Float64).to_numpy().copy()
    if first is None:
        first = first_interactions(dataset)
    born: F64 = np.where(np.isnan(created), first, created)
    return born


def age_days(born: F64, items: npt.NDArray[np.int32], at: int) -> F64:
    """Age of each item at `at` in days, never negative (unknown birth: infinitely old)."""
    ages: F64 = np.maximum((at - born[items]) / SECONDS_PER_DAY, 0.0)
    return np.where(np.isnan(ages), np.inf, ages)


def category_matrix(dataset: Dataset) -> npt.NDArray[np.float32]:
    """Dense items x categories 0/1 matrix (zero columns when the catalog has no categories)."""
    cats, _ = dataset.item_categories()
    dense: npt.NDArray[np.float32] = cats.toarray().astype(np.float32)
    return dense
