"""Generic loaders: interactions, items and users from CSV/TSV, Parquet and JSON lines.

Every file is read into a `Table` (see `recsemble.data.tables`: a polars frame plus the line each
row came from), checked with vectorized expressions, and handed to `Dataset.from_frames`. Errors
name file, line and column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from recsemble.data.dataset import DEFAULT_EVENT, Dataset
from recsemble.data.tables import (
    SUFFIXES,
    UNPACKED,
    Table,
    blank_to_null,
    parse_bools,
    parse_categories,
    parse_ids,
    parse_numbers,
    parse_strings,
    read_table,
)
from recsemble.data.timestamps import parse_timestamps
from recsemble.errors import ConfigError, DataError

__all__ = [
    "ALIASES",
    "INTERACTION_FIELDS",
    "ITEM_FIELDS",
    "interactions_frame",
    "items_frame",
    "load_dataset",
    "load_files",
    "read_interactions",
    "read_items",
    "read_users",
    "resolve_columns",
    "users_frame",
]

#: Our field -> the file column names recognized for it (lower case, best first).
ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userid", "user"),
    "item_id": ("item_id", "itemid", "item", "movie_id", "movieid"),
    "timestamp": ("timestamp", "time", "ts", "datetime"),
    "event": ("event", "event_type", "type"),  # "type": the HTTP API's name for it
    "value": ("value", "rating"),
    "weight": ("weight",),
    "title": ("title", "name"),
    "text": ("text", "description"),
    "categories": ("categories", "genres", "category", "genre"),
    "created_at": ("created_at",),
    "available": ("available",),
}
INTERACTION_FIELDS = ("user_id", "item_id", "timestamp", "event", "value", "weight")
ITEM_FIELDS = ("item_id", "title", "text", "categories", "created_at", "available")


# ---------------------------------------------------------------------------- columns
def resolve_columns(
    table: Table,
    fields: Sequence[str],
    required: Sequence[str],
    mapping: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Our field -> the file's column: `mapping` first, then the ALIASES (case-insensitive)."""
    unknown = sorted(set(mapping or {}) - set(ALIASES))
    if unknown:
        raise ConfigError(f"unknown column mapping keys {unknown}; valid: {sorted(ALIASES)}")
    found: dict[str, str] = {}
    columns = table.frame.columns
    for field in fields:
        if mapping and field in mapping:
            if mapping[field] not in columns:
                raise table.error(
                    f"mapped column {mapping[field]!r} for {field} is missing; found {columns}",
                    column=mapping[field],
                )
            found[field] = mapping[field]
    lower: dict[str, str] = {}
    for col in columns:
        if col not in found.values():
            lower.setdefault(col.strip().lower(), col)
    for field in fields:
        match = next((lower[a] for a in ALIASES[field] if a in lower), None)
        if field not in found and match is not None and match not in found.values():
            found[field] = match
    for field in required:
        if field not in found:
            why = " (the evaluation protocol splits by time)" if field == "timestamp" else ""
            raise table.error(
                f"no {field} column{why}; found columns {columns}. Name it {field!r} or pass "
                f"columns={{{field!r}: '<column>'}}",
                column=field,
            )
    return found


# ---------------------------------------------------------------------------- attributes
def _attribute(table: Table, column: str) -> pl.Series:
    """An extra column; text becomes int/float/bool only when every value reads back the same
    (so ids and codes such as "007" or zip "01234" stay text)."""
    series = blank_to_null(table.frame[column])
    if not table.text or series.null_count() == series.len():
        return series
    values = series.drop_nulls()
    ints = values.cast(pl.Int64, strict=False)
    if ints.null_count() == 0 and (ints.cast(pl.String) == values).all():
        return series.cast(pl.Int64)
    floats = values.cast(pl.Float64, strict=False)
    if floats.null_count() == 0 and not values.str.contains(r"^[+-]?0\d").any():
        return series.cast(pl.Float64)
    if values.str.to_lowercase().is_in(["true", "false"]).all():
        return series.str.to_lowercase() == "true"
    return series


def _duplicates(table: Table, ids: pl.Series, column: str) -> None:
    def message(row: int) -> str:
        first = int((ids == ids[row]).arg_true()[0])
        where = f"line {table.lines[first]}" if table.lines is not None else f"row {first}"
        return f"duplicate {ids.name} {ids[row]!r} (first at {where})"

    table.check(~ids.is_first_distinct(), column, message)


# ---------------------------------------------------------------------------- frames
def interactions_frame(
    table: Table,
    columns: Mapping[str, str] | None = None,
    event_weights: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """user_id, item_id, timestamp (+ event, value, weight when present), validated."""
    cols = resolve_columns(table, INTERACTION_FIELDS, INTERACTION_FIELDS[:3], columns)
    out = [
        parse_ids(table, cols["user_id"], "user_id"),
        parse_ids(table, cols["item_id"], "item_id"),
        parse_timestamps(table, cols["timestamp"], "timestamp", required=True),
    ]
    if "event" in cols:
        events = parse_strings(table, cols["event"], "event", required=True)
        if event_weights and "weight" not in cols:
            known = [*event_weights, DEFAULT_EVENT]
            table.check(
                ~events.is_in(known),
                cols["event"],
                lambda r: f"event {events[r]!r} has no weight; configured: {sorted(event_weights)}",
            )
        out.append(events)
    if "value" in cols:
        out.append(parse_numbers(table, cols["value"], "value", required=False))
    if "weight" in cols:
        weights = parse_numbers(table, cols["weight"], "weight", required=True)
        table.check(weights < 0, cols["weight"], lambda r: "weights must not be negative")
        out.append(weights)
    return pl.DataFrame(out)


def items_frame(table: Table, columns: Mapping[str, str] | None = None) -> pl.DataFrame:
    """item_id plus title, text, categories, created_at, available where present; other columns
    are kept as attributes."""
    cols = resolve_columns(table, ITEM_FIELDS, ["item_id"], columns)
    ids = parse_ids(table, cols["item_id"], "item_id")
    _duplicates(table, ids, cols["item_id"])
    out = [ids]
    out += [
        parse_strings(table, cols[f], f, required=False) for f in ("title", "text") if f in cols
    ]
    if "categories" in cols:
        out.append(parse_categories(table, cols["categories"]))
    if "created_at" in cols:
        out.append(parse_timestamps(table, cols["created_at"], "created_at", required=False))
    if "available" in cols:
        out.append(parse_bools(table, cols["available"], "available"))
    used = set(cols.values())
    extra = [_attribute(table, c) for c in table.frame.columns if c not in used]
    return pl.DataFrame([*out, *(s for s in extra if s.name not in ITEM_FIELDS)])


def users_frame(table: Table, columns: Mapping[str, str] | None = None) -> pl.DataFrame:
    """user_id plus every other column as an attribute."""
    cols = resolve_columns(table, ["user_id"], ["user_id"], columns)
    ids = parse_ids(table, cols["user_id"], "user_id")
    _duplicates(table, ids, cols["user_id"])
    extra = [_attribute(table, c) for c in table.frame.columns if c != cols["user_id"]]
    return pl.DataFrame([ids, *extra])


def read_interactions(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    event_weights: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """An interactions file as a validated frame ready for `Dataset.from_frames`."""
    return interactions_frame(read_table(path, encoding=encoding), columns, event_weights)


def read_items(
    path: str | Path, *, columns: Mapping[str, str] | None = None, encoding: str = "utf-8"
) -> pl.DataFrame:
    """An items file as a validated frame (ids unique)."""
    return items_frame(read_table(path, encoding=encoding), columns)


def read_users(
    path: str | Path, *, columns: Mapping[str, str] | None = None, encoding: str = "utf-8"
) -> pl.DataFrame:
    """A users file as a validated frame (ids unique)."""
    return users_frame(read_table(path, encoding=encoding), columns)


def load_files(
    interactions: str | Path,
    items: str | Path | None = None,
    users: str | Path | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    event_weights: Mapping[str, float] | None = None,
    name: str | None = None,
) -> Dataset:
    """A Dataset from an interactions file and optional items and users files.

    `columns` applies to all three files; in the items and users files only the mapped columns
    that exist there are used (they rarely share every column name with the interactions).
    """
    table = read_table(interactions, encoding=encoding)
    frame = interactions_frame(table, columns, event_weights)
    side = [read_table(p, encoding=encoding) if p is not None else None for p in (items, users)]
    return Dataset.from_frames(
        frame,
        items_frame(side[0], _present(columns, side[0])) if side[0] else None,
        users_frame(side[1], _present(columns, side[1])) if side[1] else None,
        event_weights=event_weights,
        name=name if name is not None else _stem(Path(interactions)),
    )


def _stem(path: Path) -> str:
    """The dataset's name from its file: x.csv.gz is x."""
    return path.with_suffix("").stem if path.suffix.lower() in UNPACKED else path.stem


def _present(columns: Mapping[str, str] | None, table: Table) -> dict[str, str]:
    return {k: v for k, v in (columns or {}).items() if v in table.frame.columns}


# ---------------------------------------------------------------------------- entry point
def load_dataset(
    spec: str | Path,
    *,
    data_dir: str | Path | None = None,
    event_weights: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Load a Dataset by name or path.

    spec: a MovieLens name (ml-100k, ml-latest-small, ml-1m, ml-20m, ml-25m; read from or
    downloaded into data_dir), "synthetic"/"demo", an interactions file, or a folder holding
    interactions.{csv,tsv,parquet,jsonl,ndjson} and optionally items.* and users.* (or the files
    of a MovieLens release).
    """
    import recsemble.data.movielens as movielens  # it builds on this module: import late

    if isinstance(spec, str) and spec in movielens.MOVIELENS_NAMES:
        return movielens.load_movielens(spec, data_dir, event_weights=event_weights)
    if isinstance(spec, str) and spec in ("synthetic", "demo"):
        from recsemble.data.synthetic import load_synthetic

        return load_synthetic(data_dir)
    path = Path(spec).expanduser()
    if path.is_file():
        return load_files(path, columns=columns, encoding=encoding, event_weights=event_weights)
    if path.is_dir():
        return _load_folder(path, columns, encoding, event_weights)
    raise DataError(
        f"{str(spec)!r} is neither a dataset name nor an existing file or folder; names: "
        f"{[*movielens.MOVIELENS_NAMES, 'synthetic', 'demo']}"
    )


def _load_folder(
    folder: Path,
    columns: Mapping[str, str] | None,
    encoding: str,
    event_weights: Mapping[str, float] | None,
) -> Dataset:
    import recsemble.data.movielens as movielens
    from recsemble.data.synthetic import CONFIG_FILE, EVENT_WEIGHTS

    if event_weights is None and (folder / CONFIG_FILE).is_file():
        event_weights = EVENT_WEIGHTS  # a folder written by `recsemble data synth`
    interactions = _find_one(folder, "interactions")
    if interactions is None:
        release = movielens.detect_release(folder)
        if release is not None:
            return movielens.load_movielens(release, folder, event_weights=event_weights)
        raise DataError(
            f"no interactions file: expected interactions with one of the suffixes {SUFFIXES} "
            f"(or those with {', '.join(UNPACKED)} when compressed)",
            source=str(folder),
        )
    return load_files(
        interactions,
        _find_one(folder, "items"),
        _find_one(folder, "users"),
        columns=columns,
        encoding=encoding,
        event_weights=event_weights,
        name=folder.name,
    )


def _find_one(folder: Path, stem: str) -> Path | None:
    """The folder's `stem` file, whatever the case of its name (Items.CSV is items.csv)."""
    names = {f"{stem}{s}{packed}" for s in SUFFIXES for packed in ("", *UNPACKED)}
    found = sorted(p for p in folder.iterdir() if p.name.lower() in names and p.is_file())
    if len(found) > 1:
        raise DataError(
            f"several {stem} files, keep one: {[p.name for p in found]}", source=str(folder)
        )
    return found[0] if found else None
