"""TOML has no null: "none" sets a key that may be None to None, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsemble.config import parse_override, resolve
from recsemble.errors import ConfigError


def test_none_from_the_command_line() -> None:
    key, value = parse_override("ensemble.serving_top=none")
    config = resolve(overrides={key: value}, env={}).config
    assert config.ensemble.serving_top is None
    assert resolve(env={}).config.ensemble.serving_top == 50


def test_none_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[models.covisit]\nhalf_life_events = "None"\n[ensemble]\nnegatives_per_user = "none"\n'
    )
    config = resolve(path, env={}).config
    assert config.model_config_for("covisit").half_life_events is None
    assert config.ensemble.negatives_per_user is None


def test_none_is_only_none_where_none_is_allowed() -> None:
    config = resolve(overrides={"models.itemknn.weighting": "none"}, env={}).config
    assert config.model_config_for("itemknn").weighting == "none"  # a literal choice, kept
    with pytest.raises(ConfigError, match="validation_folds"):
        resolve(overrides={"ensemble.validation_folds": "none"}, env={})
