"""Resolving the config: errors located in the section that holds them, dotted overrides of
one key in a table, and where each ensemble member's setting came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsemble.config import resolve
from recsemble.errors import ConfigError


def test_a_model_section_error_names_its_section(tmp_path: Path) -> None:
    given = tmp_path / "c.toml"
    given.write_text("[models.itemknn]\nneighbors = 0\n")  # userknn has `neighbors` too
    with pytest.raises(ConfigError, match=r"models\.itemknn\.neighbors: Input should be"):
        resolve(given, env={})
    given.write_text("[models.pop-trending]\nwindow_days = 3\nhalf_life_days = 2\n")
    with pytest.raises(ConfigError, match=r"models\.pop-trending: set window_days .* not both"):
        resolve(given, env={})


def test_a_member_params_error_names_the_member_and_the_close_key(tmp_path: Path) -> None:
    given = tmp_path / "c.toml"
    given.write_text(
        '[ensemble]\nmembers = [{model = "pop"}, {model = "itemknn", params = {neighbours = 3}}]\n'
    )
    with pytest.raises(ConfigError, match=r"members\[1\] \(itemknn\) params: neighbours: .*"
                       r"did you mean 'neighbors'"):  # fmt: skip
        resolve(given, env={})


def test_a_dotted_override_changes_one_key_of_a_table(tmp_path: Path) -> None:
    given = tmp_path / "c.toml"
    given.write_text("[data]\nevent_weights = {view = 1, cart = 3, purchase = 5}\n")
    weights = resolve(given, {"data.event_weights.purchase": 10}, env={}).config
    assert weights.data.event_weights == {"view": 1.0, "cart": 3.0, "purchase": 10.0}
    whole = resolve(given, {"data.event_weights": {"view": 2}}, env={}).config
    assert whole.data.event_weights == {"view": 2.0}  # a whole table still replaces


def test_member_settings_come_from_the_file_that_listed_them(tmp_path: Path) -> None:
    given = tmp_path / "c.toml"
    given.write_text('[ensemble]\nmembers = [{model = "pop", candidates = 50}]\n')
    rows = {key: source for key, _, source in resolve(given, env={}).rows()}
    assert rows["ensemble.members[0].candidates"] == f"file {given}"
    assert rows["ensemble.validation_folds"] == "default"


def test_cutoffs_from_a_file_are_ascending_and_once_each(tmp_path: Path) -> None:
    given = tmp_path / "c.toml"
    given.write_text("[protocol]\nk = [20, 10, 10]\n")  # evaluated k=20 first, k=10 twice
    assert resolve(given, env={}).config.protocol.k == [10, 20]
    assert resolve(None, {"protocol.k": [5, 5]}, env={}).config.protocol.k == [5]


def test_config_rows_list_members_in_their_order() -> None:
    members = [{"model": "pop", "name": f"p{i}"} for i in range(12)]
    rows = resolve(None, {"ensemble.members": members}, env={}).rows()
    names = [value for key, value, _ in rows if key.endswith("].name")]
    assert names == [f"p{i}" for i in range(12)]  # members[10] came before members[2]
