"""Files read into `Table`s (CSV/TSV, JSON lines, Parquet) and their columns parsed and checked.

A `Table` is a polars frame plus the line each row came from, so that the vectorized checks of the
`parse_*` functions name file, line and column in their errors. `recsemble.data.loaders` builds
validated interactions, items and users frames on top of this module.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import json
import lzma
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.errors import ConfigError, DataError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUFFIXES = (*TEXT_SUFFIXES, ".parquet", *JSONL_SUFFIXES)
# What pandas/Python write for a missing id (listed in their usual spellings: no lowercasing).
#: Text a data file uses for "no value": never an id.
MISSING_IDS = ("nan", "NaN", "NAN", "null", "Null", "NULL", "none", "None", "NONE")
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class Table:
    """A file read into a frame, with the 1-based line of every row (None for Parquet)."""

    frame: pl.DataFrame
    source: str
    lines: npt.NDArray[np.int64] | None
    text: bool = False  # CSV-like: every column arrived as a string

    def error(self, message: str, row: int | None = None, column: str | None = None) -> DataError:
        if row is not None and self.lines is None:
            message = f"row {row} (counting from 0): {message}"
        line = int(self.lines[row]) if row is not None and self.lines is not None else None
        return DataError(message, source=self.source, line=line, column=column)

    def check(self, bad: pl.Series, column: str, message: Callable[[int], str]) -> None:
        """Raise for the first row where `bad` is true (nulls count as fine)."""
        bad = bad.fill_null(False)
        if bad.any():
            row = int(bad.arg_true()[0])
            raise self.error(message(row), row, column)


# ---------------------------------------------------------------------------- reading files
#: Compressed files read as the file inside: suffix -> (leading bytes, decompress).
UNPACKED: dict[str, tuple[bytes, Callable[[bytes], bytes]]] = {
    ".gz": (b"\x1f\x8b", gzip.decompress),
    ".bz2": (b"BZh", bz2.decompress),
    ".xz": (b"\xfd7zXZ\x00", lzma.decompress),
}
_PACKED = {".zst": b"\x28\xb5\x2f\xfd", ".zip": b"PK\x03\x04", ".7z": b"7z\xbc\xaf\x27\x1c"}


def read_table(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    separator: str | None = None,
    names: Sequence[str] | None = None,
    quote: str | None = '"',
) -> Table:
    """Read a .csv/.tsv/.parquet/.jsonl/.ndjson file (other suffixes: pass `separator`), also
    gzip, bzip2 or xz compressed (`x.csv.gz`).

    Text files are read with every column as a string. names: column names of a headerless file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", source=str(path))
    if path.stat().st_size == 0:
        raise DataError("the file is empty", source=str(path))
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path, path)
    raw, suffix = _unpacked(path)
    if not raw:
        raise DataError("the file is empty", source=str(path))
    if suffix == ".parquet":  # x.parquet.gz
        return _read_parquet(path, io.BytesIO(raw))
    raw = _utf8_bytes(path, raw, encoding)
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, raw)
    sep = separator or _sniffed(raw, TEXT_SUFFIXES.get(suffix))
    if sep is None:
        raise DataError(f"unknown file type; use one of {list(SUFFIXES)}", source=str(path))
    if len(sep) > 1:  # polars wants a one-byte separator (MovieLens 1M uses "::")
        raw, sep = raw.replace(sep.encode(), b"\x1f"), "\x1f"
    return _read_csv(path, raw, sep, names, quote)


def _sniffed(raw: bytes, sep: str | None) -> str | None:
    """A .csv exported with ';' (spreadsheets in many locales), tabs or '|' between fields: a
    first line without the suffix's separator but with one of these cannot be one column."""
    first = raw.split(b"\n", 1)[0]
    if sep != "," or b"," in first:
        return sep
    found = [s for s in (";", "\t", "|") if s.encode() in first]
    return found[0] if len(found) == 1 else sep


def _unpacked(path: Path) -> tuple[bytes, str]:
    """The file's bytes, decompressed when packed, and the suffix of what they are (x.csv.gz:
    .csv). A packed file is known by its suffix or, named as if plain, by its leading bytes."""
    raw, suffix = path.read_bytes(), path.suffix.lower()
    inner = Path(path.stem).suffix.lower()
    if suffix in _PACKED or any(raw.startswith(m) for m in _PACKED.values()):
        raise DataError(  # else read as text: an "encoding" error
            "a compressed file: unpack it first (gzip, bzip2 and xz are read as they are)",
            source=str(path),
        )
    for name, (magic, decompress) in UNPACKED.items():
        if suffix == name or raw.startswith(magic):
            try:
                return decompress(raw), inner if suffix == name else suffix
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
                if suffix == name or not magic.isascii():  # text may start with "BZh"
                    why = f"cannot decompress it as {name}: {exc}"
                    raise DataError(why, source=str(path)) from None
    return raw, suffix


def _utf8_bytes(path: Path, raw: bytes, encoding: str) -> bytes:
    """The text as UTF-8 bytes; a byte the encoding rejects is reported with line and column."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        start = exc.start
        line = raw.count(b"\n", 0, start) + 1
        col = start - raw.rfind(b"\n", 0, start)
        raise DataError(
            f"byte 0x{raw[start]:02x} at column {col} (byte {start} of the file) is not valid "
            f"{encoding}; if the file uses another encoding pass it, e.g. encoding='latin-1'",
            source=str(path),
            line=line,
        ) from None
    except LookupError as exc:
        raise ConfigError(f"unknown encoding {encoding!r}") from exc
    if codecs.lookup(encoding).name == "utf-8":
        return raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    return text.encode("utf-8")


def _read_parquet(path: Path, data: Path | io.BytesIO) -> Table:
    try:
        frame = pl.read_parquet(data, glob=False)  # "[x]" in a path is a name
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read Parquet: {exc}", source=str(path)) from exc
    if frame.height == 0:
        raise DataError("the file has no rows", source=str(path))
    return Table(frame, str(path), None)


def _read_jsonl(path: Path, raw: bytes) -> Table:
    records = _scan(raw, None)
    lines = records.lines[~records.blank]
    if lines.size == 0:
        raise DataError("the file is empty", source=str(path))
    try:  # the schema from every line: a field first seen on line 101 is still a column
        frame = pl.read_ndjson(raw, infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        _raise_json_error(path, raw)
        raise DataError(f"cannot read JSON lines: {exc}", source=str(path)) from exc
    if lines.size != frame.height:  # whitespace-only lines: rare, count them the slow way
        lines = np.array([i + 1 for i, ln in enumerate(raw.split(b"\n")) if ln.strip()])
    return Table(frame, str(path), lines)


def _raise_json_error(path: Path, raw: bytes) -> None:
    """Find the first bad line (error path only: polars does not say where)."""

    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    for number, text in enumerate(raw.split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, parse_constant=no_constants)
        except ValueError as exc:
            raise DataError(f"invalid JSON: {exc}", source=str(path), line=number) from None
        if not isinstance(obj, dict):
            raise DataError("each line must be a JSON object", source=str(path), line=number)


@dataclass(frozen=True)
class _Records:
    """Where the records of a delimited text file start, found on its bytes (vectorized)."""

    buf: npt.NDArray[np.uint8]
    starts: npt.NDArray[np.int64]  # byte offset of each record (trailing blank lines excluded)
    lines: npt.NDArray[np.int64]  # 1-based line each record starts on
    blank: npt.NDArray[np.bool_]
    trailing: int  # blank lines ending the file
    outside: npt.NDArray[np.bool_] | None  # byte is outside quotes (None: file has no quotes)

    def fields(self, sep: str) -> npt.NDArray[np.int64]:
        """Fields in every record (0 for a blank line)."""
        mask = self.buf == ord(sep)
        seps = np.flatnonzero(mask & self.outside if self.outside is not None else mask)
        fields = np.diff(np.searchsorted(seps, np.append(self.starts, self.buf.size))) + 1
        fields[self.blank] = 0
        return fields

    def seps(self, sep: str) -> int:
        mask = self.buf == ord(sep)
        return int(np.count_nonzero(mask & self.outside if self.outside is not None else mask))


def _scan(raw: bytes, quote: str | None) -> _Records:
    buf = np.frombuffer(raw, dtype=np.uint8)
    all_newlines = np.flatnonzero(buf == 10)
    ends, outside = all_newlines, None
    if quote is not None and quote.encode() in raw:
        # Inside quotes the running xor of quote bytes is 1: newlines there are data.
        outside = np.bitwise_xor.accumulate(buf == ord(quote)) == 0
        ends = all_newlines[outside[all_newlines]]
    starts = np.concatenate(([0], ends + 1)).astype(np.int64)
    length = np.concatenate((ends, [buf.size])) - starts
    first = buf[np.minimum(starts, max(buf.size - 1, 0))]
    blank = (length == 0) | ((length == 1) & (first == 13))
    nonblank = np.flatnonzero(~blank)
    keep = int(nonblank[-1]) + 1 if nonblank.size else 0
    trailing = int(blank[keep:].sum()) - int(starts[-1] >= buf.size)  # a final newline is no line
    starts, blank = starts[:keep], blank[:keep]
    if ends is all_newlines:  # no quoted newlines: record i starts on line i + 1
        lines = np.arange(1, keep + 1, dtype=np.int64)
    else:
        lines = np.searchsorted(all_newlines, starts).astype(np.int64) + 1
    return _Records(buf, starts, lines, blank, max(trailing, 0), outside)


def _read_csv(
    path: Path, raw: bytes, sep: str, names: Sequence[str] | None, quote: str | None
) -> Table:
    records = _scan(raw, quote)
    if records.starts.size == 0:
        raise DataError("the file is empty", source=str(path))
    header = names is None
    try:
        frame = pl.read_csv(
            raw,
            has_header=header,
            new_columns=None if header else list(names or ()),
            separator=sep,
            quote_char=quote,
            infer_schema=False,
            empty_string_is_null=False,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        _check_fields(path, records, sep, len(names) if names else records.fields(sep)[0])
        raise DataError(f"cannot parse: {exc}", source=str(path)) from exc
    dupes = [c for c in frame.columns if "_duplicated_" in c]
    if dupes:
        name = dupes[0].split("_duplicated_")[0]
        raise DataError(f"column {name!r} appears twice in the header", source=str(path), line=1)
    tail = frame.tail(records.trailing)
    if records.trailing and tail.select(pl.all_horizontal(pl.all() == "")).to_series().all():
        frame = frame.head(frame.height - records.trailing)  # blank lines at the end: no rows
    if frame.height == 0:
        raise DataError("the file has a header but no data rows", source=str(path), line=1)
    if records.starts.size - header != frame.height:  # quoting confused the scan: trust polars
        return Table(frame, str(path), np.arange(frame.height) + 1 + header, text=True)
    # polars refuses rows with too many fields, so a full separator count means none has too few.
    if records.seps(sep) != (frame.width - 1) * records.starts.size:
        _check_fields(path, records, sep, frame.width)
    return Table(frame, str(path), records.lines[header:], text=True)


def _check_fields(path: Path, records: _Records, sep: str, expected: int) -> None:
    fields = records.fields(sep)
    bad = np.flatnonzero(fields != expected)
    if bad.size:
        got = int(fields[bad[0]])
        hint = " (is a quote unbalanced?)" if records.outside is not None else ""
        raise DataError(
            f"{'blank line' if got == 0 else f'row has {got} field(s)'}, expected {expected}{hint}",
            source=str(path),
            line=int(records.lines[bad[0]]),
        )


# ---------------------------------------------------------------------------- converters
def blank_to_null(series: pl.Series) -> pl.Series:
    """Text stripped of surrounding whitespace, empty text as null (other dtypes as they are)."""
    if series.dtype != pl.String:
        return series
    stripped = series.str.strip_chars()
    return stripped.set(stripped == "", None)


#: What the loaders strip from text (Unicode White_Space, as polars' strip_chars).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)


def id_problem(text: str) -> str | None:
    """Why `text` cannot be an id in a data file, naming it (None: it can). The HTTP API and
    the store refuse such ids up front, because retraining reads them back from a file."""
    if text != text.strip(WHITESPACE):
        return f"{text!r} has leading or trailing whitespace"
    if text in MISSING_IDS:
        return f"{text!r} means a missing value in data files"
    return None


def parse_ids(table: Table, column: str, field: str) -> pl.Series:
    """Ids as strings (never numbers: "007" stays "007"); missing or empty ids are errors."""
    series = table.frame[column]
    if not (series.dtype == pl.String or series.dtype.is_integer()):
        raise table.error(f"{field} must be strings or integers, not {series.dtype}", None, column)
    ids = blank_to_null(series.cast(pl.String))
    table.check(ids.is_null(), column, lambda r: f"missing {field} (empty or null)")
    table.check(ids.is_in(MISSING_IDS), column, lambda r: f"missing {field}: {ids[r]!r}")
    return ids.alias(field)


def parse_numbers(table: Table, column: str, field: str, *, required: bool) -> pl.Series:
    """Float64; text must be numeric, NaN and infinities are errors."""
    series = blank_to_null(table.frame[column])
    if required:
        table.check(series.is_null(), column, lambda r: f"missing {field}")
    if not (series.dtype == pl.String or series.dtype.is_numeric()):
        raise table.error(f"{field} must be numbers, not {series.dtype}", None, column)
    numbers = series.cast(pl.Float64, strict=False)
    table.check(
        numbers.is_null() & series.is_not_null(),
        column,
        lambda r: f"{field} must be a number, found {series[r]!r}",
    )
    table.check(~numbers.is_finite(), column, lambda r: f"{field} is {series[r]!r}, not a number")
    return numbers.alias(field)


def parse_strings(table: Table, column: str, field: str, *, required: bool) -> pl.Series:
    series = table.frame[column]
    if series.dtype.is_nested():
        raise table.error(f"{field} must be text, not {series.dtype}", None, column)
    strings = blank_to_null(series.cast(pl.String))
    if required:
        table.check(strings.is_null(), column, lambda r: f"missing {field}")
    return strings.alias(field)


def parse_categories(table: Table, column: str) -> pl.Series:
    """List of strings: a list column as is, or text split on "|" (if any value has one) or ","."""
    series = table.frame[column]
    if isinstance(series.dtype, pl.List):
        return series.cast(pl.List(pl.String)).alias("categories")
    return split_categories(parse_strings(table, column, "categories", required=False))


def split_categories(text: pl.Series) -> pl.Series:
    """Category text ("Action|Comedy", or "a, b") as lists: split on "|" if any value has one,
    else on ","; blanks dropped."""
    sep = "|" if text.str.contains("|", literal=True).any() else ","
    parts = text.str.split(sep).list.eval(pl.element().str.strip_chars())
    return parts.list.eval(pl.element().filter(pl.element() != "")).alias("categories")


def parse_bools(table: Table, column: str, field: str) -> pl.Series:
    series = blank_to_null(table.frame[column])
    if series.dtype == pl.Boolean or series.dtype.is_integer():
        return series.cast(pl.Boolean).alias(field)
    lower = series.cast(pl.String).str.to_lowercase()
    table.check(
        ~lower.is_in([*_TRUE, *_FALSE]),
        column,
        lambda r: f"{field} must be true/false, found {series[r]!r}",
    )
    return lower.is_in(_TRUE).set(lower.is_null(), None).alias(field)
