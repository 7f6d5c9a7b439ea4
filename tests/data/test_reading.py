"""Reading data files: JSON-lines schemas, timestamp units and dates, compressed files."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recsemble.data.loaders import load_dataset, load_files, read_interactions
from recsemble.errors import DataError

HEADER = "user_id,item_id,timestamp\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def utc(year: int, month: int, day: int) -> int:
    return int(dt.datetime(year, month, day, tzinfo=dt.UTC).timestamp())


# ---------------------------------------------------------------------------- JSON lines
def test_jsonl_fields_first_seen_late_are_read(tmp_path: Path) -> None:
    """polars infers a schema from 100 lines by default: later fields were dropped."""
    rows = [f'{{"user_id": "u{n}", "item_id": "i{n}", "timestamp": {n + 1}}}' for n in range(100)]
    rows += [f'{{"user_id": "u{n}", "item_id": "i{n}", "timestamp": {n + 1}, "rating": 5}}'
             for n in range(100, 120)]  # fmt: skip
    frame = read_interactions(write(tmp_path, "late.jsonl", "\n".join(rows) + "\n"))
    assert frame["value"].drop_nulls().to_list() == [5.0] * 20


# ---------------------------------------------------------------------------- timestamps
def test_a_column_mixing_seconds_and_milliseconds_is_refused(tmp_path: Path) -> None:
    """One scale for the column turned every seconds value into 1970 (1714566600 -> 1714566)."""
    path = write(
        tmp_path, "mix.csv", f"{HEADER}u1,i1,1714566600\nu1,i2,1714566700\nu2,i1,1714566900000\n"
    )
    with pytest.raises(DataError, match="mixes units") as exc:
        read_interactions(path)
    message = str(exc.value)
    assert "'1714566900000' looks like milliseconds" in message, message
    assert "other values like seconds" in message, message
    assert (exc.value.source, exc.value.line, exc.value.column) == (str(path), 4, "timestamp")


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_a_column_in_one_unit_is_read_as_seconds(tmp_path: Path, scale: int) -> None:
    rows = "".join(f"u{n},i{n},{(1714566600 + n) * scale + scale // 2}\n" for n in range(3))
    frame = read_interactions(write(tmp_path, "one.csv", HEADER + rows))
    assert frame["timestamp"].to_list() == [1714566600, 1714566601, 1714566602]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_a_non_finite_timestamp_cannot_be_parsed(tmp_path: Path, bad: str) -> None:
    """NaN and infinities counted as nanoseconds: a "mixes units" error named the good rows."""
    path = write(tmp_path, "nan.csv", f"{HEADER}u1,i1,1714566900000\nu2,i2,{bad}\n")
    with pytest.raises(DataError, match=f"cannot parse timestamp '{bad}'") as exc:
        read_interactions(path)
    assert exc.value.line == 3


def test_compact_dates_are_dates(tmp_path: Path) -> None:
    """20240501 is 1 May 2024, not 20 million seconds after 1970."""
    path = write(tmp_path, "d.csv", f'{HEADER}u1,i1,20240501\nu2,i2,"20240601"\n')
    assert read_interactions(path)["timestamp"].to_list() == [utc(2024, 5, 1), utc(2024, 6, 1)]
    jsonl = write(
        tmp_path, "d.jsonl", '{"user_id": "u1", "item_id": "i1", "timestamp": 19991231}\n'
    )
    assert read_interactions(jsonl)["timestamp"].to_list() == [utc(1999, 12, 31)]
    not_dates = write(tmp_path, "n.csv", f"{HEADER}u1,i1,20241301\n")
    assert read_interactions(not_dates)["timestamp"].to_list() == [20241301]  # month 13


# ---------------------------------------------------------------------------- compressed files
TEXT = {
    ".csv": f"{HEADER}u1,i1,1714566600\nu2,i2,1714566700\n".encode(),
    ".tsv": b"user_id\titem_id\ttimestamp\nu1\ti1\t1714566600\nu2\ti2\t1714566700\n",
    ".jsonl": b'{"user_id": "u1", "item_id": "i1", "timestamp": 1714566600}\n'
    b'{"user_id": "u2", "item_id": "i2", "timestamp": 1714566700}\n',
}
PACKERS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


@pytest.mark.parametrize("packed", list(PACKERS))
@pytest.mark.parametrize("suffix", list(TEXT))
def test_compressed_files_are_read(tmp_path: Path, suffix: str, packed: str) -> None:
    """They were reported as a text encoding problem ("byte 0x8b ... not valid utf-8")."""
    path = write(tmp_path, f"i{suffix}{packed}", PACKERS[packed](TEXT[suffix]))
    frame = read_interactions(path)
    assert frame["user_id"].to_list() == ["u1", "u2"]
    assert frame["timestamp"].to_list() == [1714566600, 1714566700]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_with_another_field_separator_is_read(tmp_path: Path, sep: str) -> None:
    """A spreadsheet's ';'-separated .csv was one column ('no user_id column')."""
    rows = ["user_id,item_id,title,timestamp", 'u1,i1,"A, B",1714566600', "u2,i2,C,1714566700"]
    path = write(tmp_path, "i.csv", "\n".join(r.replace(",", sep) for r in rows) + "\n")
    frame = read_interactions(path)
    assert frame["user_id"].to_list() == ["u1", "u2"]
    assert frame["timestamp"].to_list() == [1714566600, 1714566700]


def test_a_one_column_header_stays_comma_separated(tmp_path: Path) -> None:
    """Two candidate separators in a comma-less header: no guess, the file is read as written."""
    path = write(tmp_path, "i.csv", "user_id;item_id|timestamp\nu1;i1|1\n")
    with pytest.raises(DataError, match="no user_id column"):
        read_interactions(path)


def test_a_compressed_file_named_as_plain_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", gzip.compress(TEXT[".csv"]))
    assert read_interactions(path)["item_id"].to_list() == ["i1", "i2"]


def test_a_compressed_parquet_file_is_read(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pl.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "timestamp": [5]}).write_parquet(buffer)
    path = write(tmp_path, "i.parquet.gz", gzip.compress(buffer.getvalue()))
    assert read_interactions(path)["item_id"].to_list() == ["i1"]


def test_text_starting_like_bzip2_is_text(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv", "BZh,item_id,timestamp\nu1,i1,1\n")
    assert read_interactions(path, columns={"user_id": "BZh"})["user_id"].to_list() == ["u1"]


def test_a_corrupt_compressed_file_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "i.csv.gz", gzip.compress(TEXT[".csv"])[:-12])
    with pytest.raises(DataError, match=r"cannot decompress it as \.gz") as exc:
        read_interactions(path)
    assert exc.value.source == str(path)


def test_other_archives_must_be_unpacked(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("i.csv", TEXT[".csv"])
    for name in ("i.zip", "i.csv"):
        with pytest.raises(DataError, match="a compressed file: unpack it first"):
            read_interactions(write(tmp_path, name, buffer.getvalue()))


def test_a_folder_of_compressed_files_loads(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    write(folder, "interactions.csv.gz", gzip.compress(TEXT[".csv"]))
    write(folder, "items.jsonl.xz", lzma.compress(b'{"item_id": "i1", "title": "Tea"}\n'))
    data = load_dataset(folder)
    assert (data.name, data.n_users, data.n_items) == ("shop", 2, 2)
    assert data.item_attributes["title"].to_list() == ["Tea", None]
    assert load_files(folder / "interactions.csv.gz").name == "interactions"
