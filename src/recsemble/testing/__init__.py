"""Reusable contract checks for candidate generators, and tiny known-answer datasets.

Every member of the ensemble must pass the same checks (like implicit's shared model tests):

    from recsemble.testing import check_generator
    check_generator(lambda: ItemKNN(neighbors=5))

or one check at a time (`CONTRACT_CHECKS[name](factory)`), which is how
tests/generators/test_contract.py reports exactly which member fails which check.
"""

from recsemble.testing.contract import (
    CONTRACT_CHECKS,
    Check,
    Factory,
    NotApplicable,
    assert_valid_topk,
    check_generator,
)
from recsemble.testing.data import (
    ACTION_ITEMS,
    DRAMA_ITEMS,
    empty_dataset,
    single_item_dataset,
    tiny_dataset,
)

__all__ = [
    "ACTION_ITEMS",
    "CONTRACT_CHECKS",
    "DRAMA_ITEMS",
    "Check",
    "Factory",
    "NotApplicable",
    "assert_valid_topk",
    "check_generator",
    "empty_dataset",
    "single_item_dataset",
    "tiny_dataset",
]
