from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError


def test_ids_and_orientation(tiny: Dataset) -> None:
    assert (tiny.n_users, tiny.n_items, tiny.n_interactions) == (3, 6, 6)
    mat = tiny.user_item_matrix("weight")
    assert mat.shape == (3, 6)  # users x items
    u, i = tiny.users.idx_of("100"), tiny.items.idx_of("900")
    assert mat[u, i] == pytest.approx(6.0)  # view (1) + purchase (5)
    assert tiny.user_item_matrix("binary")[u, i] == 1.0
    assert tiny.user_item_matrix("count")[u, i] == 2.0
    assert tiny.item_popularity[tiny.items.idx_of("901")] == 2
    assert tiny.user_history_lengths.tolist() == [2, 2, 1]


def test_items_without_interactions_stay_in_catalog(tiny: Dataset) -> None:
    assert "905" in tiny.items
    attrs = tiny.item_attributes
    assert attrs["title"][tiny.items.idx_of("904")] == "e"
    assert attrs["available"].to_list() == [True] * 6
    cats, names = tiny.item_categories()
    assert cats.shape == (6, 3) and list(names.ids) == ["x", "y", "z"]
    assert cats[[tiny.items.idx_of("901")]].toarray().tolist() == [[1.0, 1.0, 0.0]]


def test_user_attributes_aligned(tiny: Dataset) -> None:
    country = tiny.user_attributes["country"].to_list()
    assert country[tiny.users.idx_of("101")] == "de"
    assert country[tiny.users.idx_of("102")] is None


def test_an_unknown_matrix_kind_is_refused(tiny: Dataset) -> None:
    with pytest.raises(ValueError, match="values must be 'weight', 'binary' or 'count'"):
        tiny.user_item_matrix("binry")  # type: ignore[arg-type]  (gave the counts)


def test_matrices_are_read_only(tiny: Dataset) -> None:
    with pytest.raises(ValueError):
        tiny.user_item_matrix().data[0] = 9.0
    with pytest.raises(ValueError):
        tiny.column("timestamp")[0] = 0


def test_restrict_renumbers_and_drops(tiny: Dataset) -> None:
    u = tiny.users.idx_of("101")
    items = [tiny.items.idx_of("902"), tiny.items.idx_of("901")]
    sub = tiny.restrict([u], items)
    assert list(sub.users.ids) == ["101"] and list(sub.items.ids) == ["902", "901"]
    ext = sub.external_interactions()
    assert sorted(zip(ext["user_id"], ext["item_id"], strict=True)) == [
        ("101", "901"),
        ("101", "902"),
    ]
    assert sub.item_attributes["title"].to_list() == ["c", "b"]


def test_unknown_event_type_rejected() -> None:
    frame = pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "timestamp": [1], "event": ["like"]})
    with pytest.raises(DataError, match=r"like.*no weight"):
        Dataset.from_frames(frame, event_weights={"view": 1.0})


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"user_id": ["1"], "timestamp": [1]}), "item_id"),
        (
            pl.DataFrame({"user_id": [None, "1"], "item_id": ["2", "2"], "timestamp": [1, 2]}),
            "row 0",
        ),
        (
            pl.DataFrame({"user_id": [1.5], "item_id": ["2"], "timestamp": [1]}),
            "strings or integers",
        ),
        (pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "timestamp": ["x"]}), "timestamps"),
        (
            pl.DataFrame(
                {"user_id": ["1"], "item_id": ["2"], "timestamp": [1], "value": [float("nan")]}
            ),
            "NaN",
        ),
        (
            pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "timestamp": [1], "weight": [-1.0]}),
            "non-negative",
        ),
    ],
)
def test_invalid_interactions(frame: pl.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Dataset.from_frames(frame)


def test_duplicate_item_rows_rejected() -> None:
    frame = pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "timestamp": [1]})
    items = pl.DataFrame({"item_id": ["2", "2"], "title": ["a", "b"]})
    with pytest.raises(DataError, match="duplicate id '2'"):
        Dataset.from_frames(frame, items)


def test_datetime_timestamps_become_epoch_seconds() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["1"],
            "item_id": ["2"],
            "timestamp": [datetime(2020, 1, 1, 0, 0, 10, tzinfo=UTC)],
        }
    )
    assert Dataset.from_frames(frame).column("timestamp").tolist() == [1577836810]


def _events(**columns: list[object]) -> pl.DataFrame:
    base: dict[str, list[object]] = {"user_id": [1001, 1002], "item_id": [5001, 5002]}
    return pl.DataFrame({**base, "timestamp": [10, 20], **columns}, strict=False)


@pytest.mark.parametrize(
    ("frame", "weights", "message"),
    [
        (_events(weight=[1.0, float("inf")]), None, "weights must be finite"),
        (_events(value=[4.0, float("-inf")]), None, "values must be finite"),
        (_events(value=["good", "bad"]), None, "values must be numbers, not String"),
        (_events(weight=["1", "x"]), None, "weights must be numbers, not String"),
        (_events(event=["view", "buy"]), {"view": 1.0, "buy": -2.0}, "'buy' must be a finite"),
        (_events(event=["view", "buy"]), {"view": float("nan"), "buy": 1}, "'view' must be a"),
    ],
)
def test_bad_weights_and_values_are_named(
    frame: pl.DataFrame, weights: dict[str, float] | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        Dataset.from_frames(frame, event_weights=weights)


def test_attribute_tables_need_their_id_column_without_nulls() -> None:
    items = pl.DataFrame({"id": [5001], "title": ["a"]})
    with pytest.raises(DataError, match="items need a 'item_id' column"):
        Dataset.from_frames(_events(), items)
    users = pl.DataFrame({"user_id": [1001, None], "age": [30, 40]})
    with pytest.raises(DataError, match="users has a missing value in row 1"):
        Dataset.from_frames(_events(), users=users)


def test_item_created_at_datetimes_become_epoch_seconds() -> None:
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    items = pl.DataFrame({"item_id": [5001, 5002], "created_at": [moment, None]})
    created = Dataset.from_frames(_events(), items).item_attributes["created_at"]
    assert created.to_list() == [int(moment.timestamp()), None]


def test_pandas_frames_are_accepted() -> None:
    pd = pytest.importorskip("pandas")
    frame = _events(value=[4.0, None]).to_pandas()
    items = pd.DataFrame({"item_id": [5002, 5003], "title": ["b", "c"]})
    data = Dataset.from_frames(frame, items)
    assert data.n_items == 3 and list(data.users.ids) == ["1001", "1002"]
    assert data.interactions["value"].to_list() == [4.0, None]
    indexed = Dataset.from_frames(frame.set_index("user_id"), items.set_index("item_id"))
    assert list(indexed.users.ids) == ["1001", "1002"]  # "no user_id column" before
    assert indexed.item_attributes["title"].to_list() == data.item_attributes["title"].to_list()
    mixed = frame.assign(item_id=[5001, "x5002"])  # pyarrow's ArrowInvalid
    with pytest.raises(DataError, match=r"interactions: the pandas frame cannot be converted"):
        Dataset.from_frames(mixed)
    with pytest.raises(TypeError, match="polars or pandas DataFrame, not list"):
        Dataset.from_frames([("1001", "5001", 10)])  # type: ignore[arg-type]


def test_epoch_milliseconds_become_seconds_as_in_files() -> None:
    # They were kept as seconds (year 52000): a half-life in days meant 1000 times longer.
    ms = _events(timestamp=[1_600_000_000_000, 1_600_000_100_000])
    assert Dataset.from_frames(ms).column("timestamp").tolist() == [1_600_000_000, 1_600_000_100]
    items = pl.DataFrame({"item_id": [5001], "created_at": [1_600_000_000_000_000]})  # us
    created = Dataset.from_frames(_events(), items).item_attributes["created_at"]
    assert created.to_list()[0] == 1_600_000_000
    with pytest.raises(DataError, match="timestamps mix units"):
        Dataset.from_frames(_events(timestamp=[1_600_000_000, 1_600_000_000_000]))


def test_restrict_refuses_idx_outside_the_data_or_repeated(tiny: Dataset) -> None:
    with pytest.raises(IndexError, match="user_idx contain idx -1"):
        tiny.restrict([-1], [0])  # was the last user, renumbered without a word
    with pytest.raises(IndexError, match="item_idx contain idx 6"):
        tiny.restrict([0], [6])  # failed inside numpy
    with pytest.raises(ValueError, match="must not repeat"):
        tiny.restrict([0, 0], [0])


def test_with_interactions_names_the_idx_columns_it_needs(tiny: Dataset) -> None:
    external = tiny.external_interactions()
    with pytest.raises(DataError, match=r"need the columns \['user_idx', 'item_idx'\]"):
        tiny.with_interactions(external)  # a polars ColumnNotFoundError


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["1001", "nan"], "user id 'nan' in row 1 is a word for a missing value"),
        (["1001", " 1002"], "user id ' 1002' in row 1 has whitespace at an end"),
        (["", "1002"], "user id '' in row 0 is empty"),
    ],
)
def test_ids_a_data_file_could_not_hold_are_refused(ids: list[str], message: str) -> None:
    # A data file refuses them and serving / retraining read ids back from one; from frames
    # "nan" (pandas' .astype(str) of a missing id) became one user holding every such row.
    with pytest.raises(DataError, match=message):
        Dataset.from_frames(_events(user_id=ids))


def test_category_text_is_split_as_in_files() -> None:
    # MovieLens-style "Action|Comedy" from a frame failed: "cannot be read as List(String)".
    items = pl.DataFrame({"item_id": [5001, 5002], "categories": ["Action|Comedy", None]})
    data = Dataset.from_frames(_events(), items)
    assert data.item_attributes["categories"].to_list() == [["Action", "Comedy"], None]
    assert list(data.item_categories()[1].ids) == ["Action", "Comedy"]
