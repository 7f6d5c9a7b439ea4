"""Saving and loading a fitted Ensemble: identical answers, checked files, external ids."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.generators import GENERATORS
from recsemble.ranking import Ensemble, EnsembleConfig, MemberConfig, RankerConfig, ViewConfig
from recsemble.ranking.ids import Catalog
from recsemble.ranking.metaranker import MetaRanker
from recsemble.ranking.persistence import (
    load_ensemble,
    load_model,
    recommend_ids,
    save_ensemble,
    save_model,
    saved_histories,
)

VIEW = ViewConfig(window_days=60, events=["view", "cart"])


@pytest.fixture(scope="module")
def fitted(small_data: Dataset) -> Ensemble:
    config = EnsembleConfig(
        members=[
            MemberConfig(model="pop"),
            MemberConfig(model="itemknn", candidates=30),
            MemberConfig(model="ease-recent", view=VIEW),  # label with '@' and ','
            MemberConfig(model="covisit", candidates=50),
        ],
        validation_folds=1,
        ranker=RankerConfig(max_rounds=5, early_stopping_share=0),
    )
    return Ensemble(config, {"itemknn": {"neighbors": 20}}).fit(small_data)


@pytest.fixture(scope="module")
def saved(fitted: Ensemble, small_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "model"
    return save_ensemble(fitted, folder, catalog=Catalog.from_dataset(small_data))


def _all_users(data: Dataset) -> np.ndarray:
    return np.arange(-1, data.n_users + 2, dtype=np.int32)  # unknown users on both sides


def _assert_same_answers(a: Ensemble, b: Ensemble, data: Dataset) -> None:
    users = _all_users(data)
    earlier = np.full(users.size, a.now_ - 20 * 86_400, np.int64)
    for kwargs in ({}, {"exclude_seen": False}, {"at": earlier}):
        left, right = a.recommend(users, 10, **kwargs), b.recommend(users, 10, **kwargs)
        np.testing.assert_array_equal(left.items, right.items, err_msg=f"items differ {kwargs}")
        np.testing.assert_array_equal(left.scores, right.scores, err_msg=f"scores differ {kwargs}")


def test_round_trip_gives_identical_recommendations(
    fitted: Ensemble, saved: Path, small_data: Dataset
) -> None:
    loaded = load_ensemble(saved)
    assert fitted.ranker_.kind_ == "lightgbm"
    _assert_same_answers(fitted, loaded, small_data)


def test_round_trip_restores_the_fitted_state(fitted: Ensemble, saved: Path) -> None:
    loaded = load_ensemble(saved)
    assert loaded.config == fitted.config
    assert loaded.model_params == fitted.model_params
    assert loaded.protocol == fitted.protocol
    assert loaded.feature_names_ == fitted.feature_names_
    assert loaded.fit_seconds_ == fitted.fit_seconds_
    assert (loaded.n_users_, loaded.n_items_, loaded.now_) == (
        fitted.n_users_,
        fitted.n_items_,
        fitted.now_,
    )
    assert list(loaded.members_) == list(fitted.members_)
    assert loaded.routes_ == fitted.routes_
    assert loaded.direct_ == fitted.direct_
    for key in ("indptr", "items", "timestamps", "weights"):
        np.testing.assert_array_equal(
            getattr(loaded.histories_, key), getattr(fitted.histories_, key)
        )
    assert fitted.features_.categories_ is not None and loaded.features_.categories_ is not None
    assert (loaded.features_.categories_ != fitted.features_.categories_).nnz == 0
    np.testing.assert_array_equal(loaded.features_.created_at_, fitted.features_.created_at_)


def test_every_fitted_attribute_is_restored(fitted: Ensemble, saved: Path) -> None:
    """Fails when Ensemble.fit learns something new that persistence does not save yet."""
    loaded = load_ensemble(saved)
    fitted_state = {name for name in vars(fitted) if name.endswith("_")} - {"training_"}
    assert fitted_state <= {name for name in vars(loaded) if name.endswith("_")}


def test_routing_survives_the_round_trip(
    fitted: Ensemble, small_data: Dataset, tmp_path: Path
) -> None:
    ens = copy.copy(fitted)
    labels = list(fitted.members_)
    assert fitted.routes_ is not None
    ens.routes_ = {name: labels[:1] if name != "cold" else labels for name in fitted.routes_}
    loaded = load_ensemble(save_ensemble(ens, tmp_path / "routed"))
    assert loaded.routes_ == ens.routes_
    _assert_same_answers(ens, loaded, small_data)


def test_a_loaded_ensemble_saves_and_loads_again(
    fitted: Ensemble, saved: Path, small_data: Dataset, tmp_path: Path
) -> None:
    again = load_ensemble(save_ensemble(load_ensemble(saved), tmp_path / "again"))
    _assert_same_answers(fitted, again, small_data)
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["training"] is None


def test_manifest_records_members_training_and_checksums(fitted: Ensemble, saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    folders = {m["label"]: m["folder"] for m in manifest["members"]}
    assert list(folders) == list(fitted.members_)
    view_label = "ease-recent@60d,view+cart"
    assert view_label in folders
    for folder in folders.values():
        assert "@" not in folder and "," not in folder
        assert (saved / folder / "manifest.json").is_file()
    assert manifest["training"]["pairs"] == fitted.training_.candidates.size
    assert manifest["training"]["positives"] == int(fitted.training_.labels.sum())
    on_disk = {str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}


def test_every_array_file_loads_without_pickle(saved: Path) -> None:
    for path in saved.rglob("*.npz"):
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                assert npz[key].dtype != object, f"{path.name}:{key} is an object array"


def test_logistic_ranker_round_trip(fitted: Ensemble, small_data: Dataset, tmp_path: Path) -> None:
    ens = copy.copy(fitted)
    ranker_config = RankerConfig(kind="logistic")
    ens.config = fitted.config.model_copy(update={"ranker": ranker_config})
    training = fitted.training_
    ens.ranker_ = MetaRanker(ranker_config).fit(
        training.features.values, training.labels, training.candidates.group_sizes()
    )
    loaded = load_ensemble(save_ensemble(ens, tmp_path / "logistic"))
    assert loaded.ranker_.kind_ == "logistic"
    _assert_same_answers(ens, loaded, small_data)


@pytest.mark.parametrize(
    "relative",
    ["ranker.txt", "features.npz", "histories.npz", "ids.json", "members/01-itemknn/arrays.npz"],
)
def test_altered_file_is_a_data_error_naming_it(saved: Path, tmp_path: Path, relative: str) -> None:
    copy_dir = Path(shutil.copytree(saved, tmp_path / "model"))
    target = copy_dir / relative
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match=re.escape(relative.split("/")[-1])):
        load_ensemble(copy_dir)


def test_missing_file_is_a_data_error_naming_it(saved: Path, tmp_path: Path) -> None:
    copy_dir = Path(shutil.copytree(saved, tmp_path / "model"))
    (copy_dir / "histories.npz").unlink()
    with pytest.raises(DataError, match=r"histories\.npz"):
        load_ensemble(copy_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="something-else"), "unsupported format"),
        (lambda m: m["config"]["members"].pop(), "members"),
        (lambda m: m.update(n_items="many"), "malformed manifest"),
    ],
)
def test_wrong_manifest_is_a_data_error(
    saved: Path, tmp_path: Path, edit: object, message: str
) -> None:
    copy_dir = Path(shutil.copytree(saved, tmp_path / "model"))
    manifest = json.loads((copy_dir / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (copy_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=message):
        load_ensemble(copy_dir)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"manifest\.json"):
        load_ensemble(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json"):
        load_model(tmp_path)


def test_save_replaces_a_model_but_not_other_folders(fitted: Ensemble, tmp_path: Path) -> None:
    folder = save_ensemble(fitted, tmp_path / "model")
    (folder / "members" / "stale").mkdir()
    save_ensemble(fitted, folder)  # over a saved model: replaced whole
    assert not (folder / "members" / "stale").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(DataError, match="not overwriting"):
        save_ensemble(fitted, other)
    assert (other / "todo.txt").read_text() == "keep me"


def test_recommend_ids_maps_ids_and_answers_unknown_users(
    fitted: Ensemble, saved: Path, small_data: Dataset
) -> None:
    known = [small_data.users.id_of(3), small_data.users.id_of(0)]
    answers = recommend_ids(saved, [known[0], "no-such-user", known[1]], 5)
    assert [a.user_id for a in answers] == [known[0], "no-such-user", known[1]]
    assert [a.known for a in answers] == [True, False, True]
    direct = fitted.recommend(np.array([3, -1, 0]), 5)
    for row, answer in enumerate(answers):
        assert list(answer.item_ids) == list(small_data.items.to_ids(direct.items[row]))
        np.testing.assert_allclose(answer.scores, direct.scores[row], rtol=0, atol=0)
        titles = small_data.item_attributes["title"].to_list()
        assert answer.titles == tuple(titles[i] for i in direct.items[row])
    seen = set(small_data.items.to_ids(fitted.histories_.rows([3]).items))
    assert not seen & set(answers[0].item_ids), "a seen item was recommended"


def test_recommend_ids_without_a_catalog_is_a_data_error(fitted: Ensemble, tmp_path: Path) -> None:
    folder = save_ensemble(fitted, tmp_path / "bare")
    with pytest.raises(DataError, match=r"ids\.json"):
        recommend_ids(folder, ["x"], 3)


def test_single_generator_folder_round_trip(small_data: Dataset, tmp_path: Path) -> None:
    model = GENERATORS["itemknn"]().fit(small_data)
    folder = save_model(model, tmp_path / "knn", Catalog.from_dataset(small_data))
    loaded = load_model(folder)
    assert loaded.model.name == "itemknn"
    assert loaded.catalog is not None and loaded.catalog.items == small_data.items
    user = small_data.users.id_of(5)
    (answer,) = recommend_ids(loaded, [user], 4)
    expected = model.recommend([5], 4).items[0]
    assert list(answer.item_ids) == list(small_data.items.to_ids(expected))


def test_a_catalog_of_other_data_is_refused_at_save(small_data: Dataset, tmp_path: Path) -> None:
    model = GENERATORS["itemknn"]().fit(small_data)
    fewer = small_data.restrict(np.arange(small_data.n_users - 1), np.arange(small_data.n_items))
    with pytest.raises(DataError, match=r"the catalog holds .* the model has"):
        save_model(model, tmp_path / "knn", Catalog.from_dataset(fewer))  # it saved, then
    assert not (tmp_path / "knn").exists()  # failed to load


def test_recommend_ids_refuses_one_id_given_as_a_string(saved: Path, small_data: Dataset) -> None:
    user = small_data.users.id_of(3)
    with pytest.raises(TypeError, match="single id"):
        recommend_ids(saved, user, 3)  # type: ignore[arg-type]  (each character was a user)


def test_explicit_values_are_kept_for_retraining(small_data: Dataset, tmp_path: Path) -> None:
    """A saved model keeps its events' ratings beside its histories (retraining exports them),
    for an ensemble and for a lone generator; implicit data saves none."""
    values = (small_data.column("item_idx") % 5 + 1).astype(np.float32)  # a rating per event
    values[::7] = np.nan  # some events carry none
    rated = small_data.with_interactions(
        small_data.interactions.with_columns(value=pl.Series(values).fill_nan(None))
    )
    config = EnsembleConfig(
        members=[MemberConfig(model="pop"), MemberConfig(model="pop-rating")],
        validation_folds=1,
        ranker=RankerConfig(kind="logistic"),
    )
    models = {
        "ensemble": Ensemble(config).fit(rated),
        "lone": GENERATORS["pop-rating"]().fit(rated),
        "implicit": GENERATORS["pop"]().fit(small_data),
    }
    for name, model in models.items():
        histories, kept = saved_histories(save_model(model, tmp_path / name))
        data = small_data if name == "implicit" else rated
        np.testing.assert_array_equal(histories.items, model.histories_.items)
        if name == "implicit":
            assert kept is None
            continue
        assert kept is not None
        order = np.lexsort(
            (data.column("item_idx"), data.column("timestamp"), data.column("user_idx"))
        )
        expected = data.interactions["value"].fill_null(np.nan).to_numpy()[order]
        np.testing.assert_array_equal(kept, expected.astype(np.float32))
