"""Generic loaders: formats, column recognition, timestamps and malformed input."""

from __future__ import annotations

import datetime as dt
import sys
import types
from pathlib import Path

import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.loaders import (
    load_dataset,
    load_files,
    read_interactions,
    read_items,
    read_users,
)
from recsemble.errors import ConfigError, DataError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def external(ds: Dataset) -> list[tuple[str, str, int]]:
    frame = ds.external_interactions()
    return sorted(zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True))


def raises_at(exc: pytest.ExceptionInfo[DataError], path: Path, line: int, column: str) -> None:
    message = str(exc.value)
    assert str(path) in message
    assert f"line {line}" in message, message
    assert repr(column) in message, message
    assert (exc.value.line, exc.value.column) == (line, column)


# ---------------------------------------------------------------------------- columns
@pytest.mark.parametrize(
    "header",
    [
        "user_id,item_id,timestamp",
        "user,item,time",
        "userId,movieId,timestamp",
        "user_id,movie_id,ts",
        "USER_ID,Item_Id,TimeStamp",
    ],
)
def test_columns_are_recognized(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, "i.csv", f"{header}\n1,10,100\n2,20,200\n1,20,300\n")
    ds = load_files(path)
    assert external(ds) == [("1", "10", 100), ("1", "20", 300), ("2", "20", 200)]


def test_rating_and_event_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user,item,ts,rating,event_type\n1,10,100,4.5,view\n")
    frame = read_interactions(path)
    assert frame.row(0, named=True) == {
        "user_id": "1",
        "item_id": "10",
        "timestamp": 100,
        "event": "view",
        "value": 4.5,
    }


def test_explicit_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "uid,sku,ts,type,rating\nu1,A,5,buy,3\nu2,B,6,view,\n")
    mapping = {"user_id": "uid", "item_id": "sku", "timestamp": "ts", "event": "type"}
    ds = load_files(
        path, columns={**mapping, "value": "rating"}, event_weights={"buy": 5.0, "view": 1.0}
    )
    assert ds.n_users == 2 and ds.n_items == 2
    assert ds.interactions["weight"].to_list() == [5.0, 1.0]
    assert ds.interactions["value"].to_list() == [3.0, None]


def test_mapping_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "uid,sku,ts\n1,2,3\n")
    with pytest.raises(DataError, match=r"mapped column 'user'.*found \['uid', 'sku', 'ts'\]"):
        read_interactions(path, columns={"user_id": "user", "item_id": "sku", "timestamp": "ts"})
    with pytest.raises(ConfigError, match="unknown column mapping keys"):
        read_interactions(path, columns={"usr": "uid"})


def test_missing_timestamp_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"no timestamp column.*\['user_id', 'item_id', 'rating'\]"):
        read_interactions(path)


def test_missing_user_column(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "customer,item_id,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match="no user_id column") as exc:
        read_interactions(path)
    assert str(path) in str(exc.value)


# ---------------------------------------------------------------------------- ids
def test_ids_stay_strings_in_every_format(tmp_path: Path) -> None:
    csv = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n007,1,5\n7,01,6\n")
    assert read_interactions(csv)["user_id"].to_list() == ["007", "7"]
    assert read_interactions(csv)["item_id"].to_list() == ["1", "01"]
    jsonl = write(tmp_path, "i.jsonl", '{"user_id": "007", "item_id": 1, "timestamp": 5}\n')
    assert read_interactions(jsonl).row(0)[:2] == ("007", "1")
    parquet = tmp_path / "i.parquet"
    pl.DataFrame({"user_id": [7], "item_id": ["007"], "timestamp": [5]}).write_parquet(parquet)
    assert read_interactions(parquet).row(0)[:2] == ("7", "007")


def test_ids_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id, item_id, timestamp\n1, 2, 3\n")
    assert read_interactions(path).row(0) == ("1", "2", 3)


# ---------------------------------------------------------------------------- round trips
FRAME = pl.DataFrame(
    {
        "user_id": ["u1", "u2", "u1", "007"],
        "item_id": ["i1", "i1", "i2", "i3"],
        "timestamp": [1_600_000_000, 1_600_000_100, 1_600_000_200, 1_600_000_300],
        "event": ["view", "purchase", "view", "cart"],
        "value": [None, 10.5, None, 2.0],
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".ndjson"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"interactions{suffix}"
    if suffix == ".csv":
        FRAME.write_csv(path)
    elif suffix == ".tsv":
        FRAME.write_csv(path, separator="\t")
    elif suffix == ".parquet":
        FRAME.write_parquet(path)
    else:
        FRAME.write_ndjson(path)
    assert read_interactions(path).equals(FRAME)


def test_crlf_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\r\n1,2,3\r\n4,5,6\r\n")
    assert read_interactions(path)["timestamp"].to_list() == [3, 6]


def test_trailing_blank_lines_are_not_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n1,2,3\n\n\n")
    assert read_interactions(path).height == 1


def test_quoted_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", 'item_id,title\n1,"Hello, ""World""\nagain"\n2,x\n')
    assert read_items(path)["title"].to_list() == ['Hello, "World"\nagain', "x"]


# ---------------------------------------------------------------------------- timestamps
def test_millisecond_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n1,2,1600000000123\n1,3,5000\n")
    assert read_interactions(path)["timestamp"].to_list() == [1_600_000_000, 5]


def test_iso_timestamps(tmp_path: Path) -> None:
    stamps = [
        "2020-01-02",
        "2020-01-02T03:04:05",
        "2020-01-02 03:04:05",
        "2020-01-02T03:04:05Z",
        "2020-01-02T05:04:05+02:00",
        "2020-01-02T03:04:05.750",
        "2020-01-02T03:04",
    ]
    body = "".join(f"1,{i},{s}\n" for i, s in enumerate(stamps))
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n" + body)
    day = int(dt.datetime(2020, 1, 2, tzinfo=dt.UTC).timestamp())
    full = day + 3 * 3600 + 4 * 60 + 5
    expected = [day, full, full, full, full, full, full - 5]
    assert read_interactions(path)["timestamp"].to_list() == expected


def test_parquet_datetime_columns(tmp_path: Path) -> None:
    moment = dt.datetime(2021, 6, 1, 12, 0, 0)
    frame = pl.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "item_id": ["x", "y", "z"],
            "timestamp": [moment, moment, moment],
        }
    )
    path = tmp_path / "i.parquet"
    frame.with_columns(pl.col("timestamp").dt.replace_time_zone("Europe/Paris")).write_parquet(path)
    expected = int(moment.replace(tzinfo=dt.UTC).timestamp()) - 7200  # Paris is UTC+2 in June
    assert read_interactions(path)["timestamp"].to_list() == [expected] * 3
    frame.with_columns(pl.col("timestamp").dt.date()).write_parquet(path)
    assert read_interactions(path)["timestamp"][0] == expected + 7200 - 12 * 3600


# ---------------------------------------------------------------------------- malformed input
def test_bad_timestamp_csv_line(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,when\n1,2,5\n1,3,yesterday\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'yesterday'") as exc:
        read_interactions(path, columns={"timestamp": "when"})
    raises_at(exc, path, 3, "when")


def test_bad_timestamp_jsonl_line(tmp_path: Path) -> None:
    lines = ['{"user_id":1,"item_id":2,"ts":"2020-01-01"}', '{"user_id":1,"item_id":2,"ts":"x"}']
    path = write(tmp_path, "i.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="cannot parse timestamp") as exc:
        read_interactions(path)
    raises_at(exc, path, 2, "ts")


def test_bad_timestamp_parquet_row(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pl.DataFrame(
        {"user_id": ["1", "2"], "item_id": ["a", "b"], "ts": ["2020-01-01", "never"]}
    ).write_parquet(path)
    with pytest.raises(DataError, match=r"row 1 .*cannot parse timestamp 'never'") as exc:
        read_interactions(path)
    assert str(path) in str(exc.value) and "'ts'" in str(exc.value)


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    body = 'user_id,item_id,timestamp,note\n1,2,3,"two\nlines"\n1,2,oops,x\n'
    path = write(tmp_path, "i.csv", body)
    with pytest.raises(DataError) as exc:
        read_interactions(path)
    raises_at(exc, path, 4, "timestamp")


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("1,2,3\n,2,4\n", 3, "user_id", "missing user_id"),
        ("1,2,3\n1, ,4\n", 3, "item_id", "missing item_id"),
        ("1,2,3\nNaN,2,4\n", 3, "user_id", "missing user_id: 'NaN'"),
        ("1,2,3\n1,2,\n", 3, "timestamp", "missing timestamp"),
    ],
)
def test_missing_values(tmp_path: Path, body: str, line: int, column: str, message: str) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n" + body)
    with pytest.raises(DataError, match=message) as exc:
        read_interactions(path)
    raises_at(exc, path, line, column)


def test_null_id_in_jsonl(tmp_path: Path) -> None:
    body = (
        '{"user_id":"1","item_id":"2","timestamp":3}\n'
        "\n"
        '{"user_id":null,"item_id":"2","timestamp":3}\n'
    )
    path = write(tmp_path, "i.jsonl", body)
    with pytest.raises(DataError, match="missing user_id") as exc:
        read_interactions(path)
    raises_at(exc, path, 3, "user_id")  # the blank line still counts


@pytest.mark.parametrize(
    ("rating", "message"), [("NaN", "not a number"), ("great", "must be a number, found 'great'")]
)
def test_bad_rating(tmp_path: Path, rating: str, message: str) -> None:
    path = write(tmp_path, "i.csv", f"user_id,item_id,timestamp,rating\n1,2,3,4\n1,2,3,{rating}\n")
    with pytest.raises(DataError, match=message) as exc:
        read_interactions(path)
    raises_at(exc, path, 3, "rating")


def test_unknown_event_type(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp,event\n1,2,3,view\n1,2,3,like\n")
    with pytest.raises(DataError, match="event 'like' has no weight") as exc:
        load_files(path, event_weights={"view": 1.0})
    raises_at(exc, path, 3, "event")


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("1,2,3\n4,5\n", 3, "row has 2 field"),
        ("1,2,3\n4,5,6,7\n", 3, "row has 4 field"),
        ("1,2,3\n\n4,5,6\n", 3, "blank line"),
    ],
)
def test_ragged_rows(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = write(tmp_path, "i.csv", "user_id,item_id,timestamp\n" + body)
    with pytest.raises(DataError, match=message) as exc:
        read_interactions(path)
    assert exc.value.line == line and str(path) in str(exc.value)
    assert f"line {line}" in str(exc.value)


@pytest.mark.parametrize("content", ["", "\n\n", "user_id,item_id,timestamp\n"])
def test_empty_files(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "i.csv", content)
    with pytest.raises(DataError, match=r"empty|no data rows") as exc:
        read_interactions(path)
    assert str(path) in str(exc.value)


def test_empty_jsonl_and_parquet(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_interactions(write(tmp_path, "i.jsonl", "\n"))
    path = tmp_path / "i.parquet"
    pl.DataFrame(schema={"user_id": pl.String}).write_parquet(path)
    with pytest.raises(DataError, match="no rows"):
        read_interactions(path)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write(tmp_path, "i.jsonl", '{"user_id":1,"item_id":2,"timestamp":3}\n{"user_id":1,\n')
    with pytest.raises(DataError, match="invalid JSON") as exc:
        read_interactions(path)
    assert exc.value.line == 2 and str(path) in str(exc.value)


def test_invalid_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", b"item_id,title\n1,Cafe\n2,Caf\xe9 noir\n")
    with pytest.raises(DataError, match=r"byte 0xe9 at column 6 .*encoding='latin-1'") as exc:
        read_items(path)
    assert exc.value.line == 3 and "line 3" in str(exc.value)
    assert read_items(path, encoding="latin-1")["title"].to_list() == ["Cafe", "Café noir"]


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown file type"):
        read_interactions(write(tmp_path, "i.xlsx", "x"))


# ---------------------------------------------------------------------------- items and users
def test_items_file(tmp_path: Path) -> None:
    body = (
        "item_id,title,description,genres,created_at,available,price,code\n"
        "1,A,first,Action|Comedy,2020-01-01,true,9.5,007\n"
        "2,B,,Drama,1577836800,no,10,12\n"
        "3,C,third,,,,,\n"
    )
    items = read_items(write(tmp_path, "items.csv", body))
    assert items["categories"].to_list() == [["Action", "Comedy"], ["Drama"], None]
    assert items["text"].to_list() == ["first", None, "third"]
    assert items["created_at"].to_list() == [1577836800, 1577836800, None]
    assert items["available"].to_list() == [True, False, None]
    assert items["price"].to_list() == [9.5, 10.0, None]
    assert items["code"].to_list() == ["007", "12", None]  # "007" would not survive as an int


def test_categories_split_on_commas(tmp_path: Path) -> None:
    items = read_items(write(tmp_path, "items.csv", 'item_id,categories\n1,"a, b"\n2,c\n'))
    assert items["categories"].to_list() == [["a", "b"], ["c"]]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_list_categories(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"item_id": ["1", "2"], "categories": [["x", "y"], []], "year": [1, 2]})
    path = tmp_path / f"items{suffix}"
    frame.write_parquet(path) if suffix == ".parquet" else frame.write_ndjson(path)
    assert read_items(path).equals(frame)


def test_bad_available(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", "item_id,available\n1,yes\n2,maybe\n")
    with pytest.raises(DataError, match="true/false") as exc:
        read_items(path)
    raises_at(exc, path, 3, "available")


@pytest.mark.parametrize("kind", ["items", "users"])
def test_duplicate_ids(tmp_path: Path, kind: str) -> None:
    key = "item_id" if kind == "items" else "user_id"
    path = write(tmp_path, f"{kind}.csv", f"{key},x\n1,a\n2,b\n1,c\n")
    reader = read_items if kind == "items" else read_users
    with pytest.raises(DataError, match=r"duplicate .*'1' \(first at line 2\)") as exc:
        reader(path)
    raises_at(exc, path, 4, key)


def test_users_file(tmp_path: Path) -> None:
    path = write(tmp_path, "users.csv", "userId,age,zip,country\n1,24,01234,fr\n2,53,94043,\n")
    users = read_users(path)
    assert users.columns == ["user_id", "age", "zip", "country"]
    assert users["age"].to_list() == [24, 53]
    assert users["zip"].to_list() == ["01234", "94043"]
    assert users["country"].to_list() == ["fr", None]


# ---------------------------------------------------------------------------- load_dataset
def test_load_folder(tmp_path: Path) -> None:
    FRAME.write_parquet(tmp_path / "interactions.parquet")
    write(tmp_path, "items.csv", "item_id,title\ni1,One\ni2,Two\ni9,Never bought\n")
    write(tmp_path, "users.jsonl", '{"user_id":"u1","country":"fr"}\n')
    ds = load_dataset(tmp_path, event_weights={"view": 1, "cart": 3, "purchase": 5})
    assert ds.name == tmp_path.name
    assert ds.n_items == 4 and "i9" in ds.items  # catalogue items without interactions stay
    assert ds.n_users == 3
    assert ds.item_attributes["title"][ds.items.idx_of("i9")] == "Never bought"
    assert ds.user_attributes["country"][ds.users.idx_of("u1")] == "fr"


def test_folder_file_names_in_any_case(tmp_path: Path) -> None:
    FRAME.write_csv(tmp_path / "Interactions.CSV")
    write(tmp_path, "Items.csv", "item_id,title\ni1,One\n")  # was silently left out
    ds = load_dataset(tmp_path, event_weights={"view": 1, "cart": 3, "purchase": 5})
    assert ds.item_attributes["title"][ds.items.idx_of("i1")] == "One"
    write(tmp_path, "items.csv", "item_id,title\ni1,Uno\n")
    with pytest.raises(DataError, match=r"several items files.*Items\.csv.*items\.csv"):
        load_dataset(tmp_path)


def test_load_single_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    FRAME.write_ndjson(path)
    ds = load_dataset(str(path))
    assert ds.n_interactions == 4 and ds.name == "events"


def test_ambiguous_folder(tmp_path: Path) -> None:
    FRAME.write_parquet(tmp_path / "interactions.parquet")
    FRAME.write_csv(tmp_path / "interactions.csv")
    with pytest.raises(DataError, match="several interactions files"):
        load_dataset(tmp_path)


def test_folder_without_interactions(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no interactions file"):
        load_dataset(tmp_path)


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ml-100k.*ml-latest-small.*synthetic"):
        load_dataset("ml-10k")


@pytest.mark.parametrize("name", ["synthetic", "demo"])
def test_synthetic_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    calls: list[object] = []

    def load_synthetic(data_dir: object) -> str:
        calls.append(data_dir)
        return "dataset"

    fake = types.ModuleType("recsemble.data.synthetic")
    fake.load_synthetic = load_synthetic  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "recsemble.data.synthetic", fake)
    assert load_dataset(name, data_dir=tmp_path) == "dataset"  # type: ignore[comparison-overlap]
    assert calls == [tmp_path]


def test_mapping_is_shared_with_items_and_users(tmp_path: Path) -> None:
    inter = write(tmp_path, "interactions.csv", "uid,sku,ts\nu1,A,5\n")
    items = write(tmp_path, "items.csv", "sku,name\nA,Apple\nB,Banana\n")
    users = write(tmp_path, "users.csv", "user_id,country\nu1,fr\n")  # no uid column here
    ds = load_files(inter, items, users, columns={"user_id": "uid", "item_id": "sku"})
    assert ds.n_items == 2 and ds.item_attributes["title"].to_list() == ["Apple", "Banana"]
    assert ds.user_attributes["country"].to_list() == ["fr"]


def test_float_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pl.DataFrame({"user_id": [1.0], "item_id": ["a"], "timestamp": [1]}).write_parquet(path)
    with pytest.raises(DataError, match="user_id must be strings or integers, not Float64"):
        read_interactions(path)


def test_a_type_column_is_the_event_type(tmp_path: Path) -> None:
    """The HTTP API calls it `type`; an `event` column wins when both are there."""
    typed = write(tmp_path, "t.csv", "user_id,item_id,timestamp,type\nu1,i1,1,cart\nu1,i2,2,view\n")
    data = load_files(typed, event_weights={"view": 1, "cart": 3})
    assert sorted(data.interactions["weight"].to_list()) == [1.0, 3.0]
    both = write(tmp_path, "b.csv", "user_id,item_id,timestamp,event,type\nu1,i1,1,cart,x\n")
    assert read_interactions(both)["event"].to_list() == ["cart"]
