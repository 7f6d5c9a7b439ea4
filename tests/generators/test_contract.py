"""The shared generator contract (recsemble.testing) run against every registered member."""

from __future__ import annotations

from typing import Any

import pytest

from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.testing import CONTRACT_CHECKS, NotApplicable, check_generator

#: Small configs for the tiny data (fast, and the keys every member must accept).
OVERRIDES: dict[str, dict[str, Any]] = {
    "pop-segment": {"attribute": "country", "min_segment_users": 1},
    # MF on 12 items: few factors, light regularization and enough epochs to learn two clusters.
    "ials": {"factors": 4, "iterations": 10, "regularization": 0.1},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 300},
    "ease": {"device": "cpu"},  # tiny data: no torch import
    "ease-recent": {"device": "cpu"},
    "sasrec": {"dim": 16, "max_len": 8, "max_epochs": 10, "device": "cpu"},
    "twotower": {"dim": 16, "max_epochs": 30, "validation_fraction": 0, "device": "cpu"},
}


def _factory(name: str) -> Any:
    def make() -> CandidateGenerator:
        return GENERATORS[name](**OVERRIDES.get(name, {}))

    return make


@pytest.mark.parametrize("check", list(CONTRACT_CHECKS))
@pytest.mark.parametrize("name", list(GENERATORS))
def test_contract(name: str, check: str) -> None:
    try:
        CONTRACT_CHECKS[check](_factory(name))
    except NotApplicable as exc:
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_registered_under_its_name(name: str) -> None:
    cls = GENERATORS[name]
    assert cls.name == name
    assert cls.Config.model_config.get("extra") == "forbid"
    assert cls.Config.model_config.get("frozen") is True


def test_an_unknown_name_is_a_key_error_naming_the_nearest() -> None:
    with pytest.raises(KeyError, match="unknown generator 'itemnn'; did you mean 'itemknn'"):
        GENERATORS["itemnn"]  # was KeyError: 'itemnn'
    assert "itemnn" not in GENERATORS and GENERATORS.get("itemnn") is None


def test_check_generator_reports_every_failed_check() -> None:
    class Broken(GENERATORS["pop"]):  # type: ignore[misc, valid-type]
        def recommend(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    with pytest.raises(AssertionError, match="recommend_shape: RuntimeError: boom"):
        check_generator(Broken)
    not_applicable = check_generator(GENERATORS["pop"], skip=["empty_catalog"])
    assert "fold_in_relevance" in not_applicable
