"""The precomputed cache: batch lists (`recsemble batch`) loaded into the store for the API.

A load is a *batch* of one model version: its rows are inserted in chunks (one transaction
each, so a load of millions of rows never holds one huge transaction) into a staging batch,
and one last transaction makes it the version's active batch and deletes the one it replaces.
Readers only ever see active batches: a load that fails half-way (a bad chunk, a lost
connection) leaves the previous batch serving, and its staged rows are removed.

Each row carries its user's history marker (events in the history the list was computed from,
and the latest one's timestamp); the server serves a cached list only while the user's history
still has that marker (serving/state.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recsemble.errors import DataError
from recsemble.store.base import MAX_ID_LENGTH

#: (user_id, rank, item_id, score, explanation JSON or None, history_events, history_latest)
PrecomputedRow = tuple[str, int, str, float, str | None, int, int]
#: Rows per insert transaction.
CHUNK_ROWS = 20_000
#: What a load hitting the (batch, user, rank) key says.
DUPLICATE_RANK = (
    "batch lists: a user has two rows of the same rank (the lists of two batches in one "
    "folder?); load the output of one `recsemble batch`"
)
#: Column -> what it must hold; explanation is optional.
REQUIRED = {
    "user": "string",
    "rank": "integer",
    "item": "string",
    "score": "number",
    "history_events": "integer",
    "history_latest": "integer",
}
OPTIONAL = {"explanation": "string", "rerank": "string"}
#: Beside the part files: the saved model the lists come from (Parquet readers skip "_" files).
MODEL_STAMP = "_recsemble_model.json"


@dataclass(frozen=True)
class CachedEntry:
    item_id: str
    score: float
    explanation: str | None  # JSON: {"members", "because", "text"}


@dataclass(frozen=True)
class CachedList:
    """One user's cached list of the active batch, best first, with its history marker."""

    user_id: str
    entries: list[CachedEntry]
    history_events: int
    history_latest: int
    rerank: str | None = None  # the re-ranking the batch applied (None: not recorded)


@dataclass(frozen=True)
class PrecomputedInfo:
    """The active batch of a model version."""

    model_version: str
    k: int  # longest list (the largest rank)
    users: int
    rows: int
    loaded_at: int  # epoch seconds


def cached_list(user_id: str, rows: Sequence[tuple[object, ...]]) -> CachedList | None:
    """A CachedList from (item_id, score, explanation, history_events, history_latest, the
    batch's rerank) rows in rank order, as both backends read them (None: no rows)."""
    if not rows:
        return None
    entries = [
        CachedEntry(str(r[0]), float(str(r[1])), None if r[2] is None else str(r[2])) for r in rows
    ]
    events, latest, rerank = rows[0][3], rows[0][4], rows[0][5]
    marker = int(str(events)), int(str(latest))
    return CachedList(user_id, entries, *marker, None if rerank is None else str(rerank))


def _kind_matches(kind: pa.DataType, wanted: str) -> bool:
    if wanted == "string":
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    if wanted == "integer":
        return bool(pa.types.is_integer(kind))
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def check_schema(schema: pa.Schema, source: str) -> None:
    """DataError naming every missing column and every column of the wrong type."""
    missing = [name for name in REQUIRED if name not in schema.names]
    if missing:
        raise DataError(
            f"batch lists lack the column(s) {missing}; expected {[*REQUIRED, *OPTIONAL]} "
            "(as `recsemble batch` writes them)",
            source=source,
        )
    for name, wanted in {**REQUIRED, **OPTIONAL}.items():
        if name in schema.names and not _kind_matches(schema.field(name).type, wanted):
            raise DataError(
                f"column {name!r} must hold {wanted}s, not {schema.field(name).type}",
                source=source,
                column=name,
            )


def check_parquet(path: Path) -> None:
    """The columns of a Parquet file or folder of batch lists (DataError when wrong)."""
    import pyarrow.dataset as ds

    if not path.exists():
        raise DataError("no such file or folder", source=str(path))
    check_schema(ds.dataset(str(path), format="parquet").schema, str(path))


def batch_rerank(path: Path) -> str | None:
    """The re-ranking a batch's lists were computed with (its `rerank` column, one value for
    every row); None for lists written before `recsemble batch` recorded it."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    check_parquet(path)
    dataset = ds.dataset(str(path), format="parquet")
    if "rerank" not in dataset.schema.names:
        return None
    values = pc.unique(dataset.to_table(columns=["rerank"]).column("rerank")).to_pylist()
    if len(values) > 1 or None in values:
        raise DataError(
            "batch lists computed with different re-ranking settings (the `rerank` column "
            "holds more than one value); load the output of one `recsemble batch`",
            source=str(path),
            column="rerank",
        )
    return str(values[0]) if values else None


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[PrecomputedRow]]:
    """A Parquet file or folder of batch lists, checked, in chunks of rows (the columns
    first: a bad file is refused before anything is written; a bad value stops the load)."""
    import pyarrow.dataset as ds

    check_parquet(path)
    dataset = ds.dataset(str(path), format="parquet")
    names = [*REQUIRED, *(n for n in OPTIONAL if n in dataset.schema.names and n != "rerank")]
    for batch in dataset.to_batches(columns=names, batch_size=chunk_rows):
        if batch.num_rows:
            yield _rows(batch, str(path))


def _rows(batch: pa.RecordBatch, source: str) -> list[PrecomputedRow]:
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    for name in REQUIRED:
        if None in columns[name]:
            raise DataError("missing values", source=source, column=name)
    explanations = columns.get("explanation", [None] * batch.num_rows)
    rows = list(
        zip(
            columns["user"],
            columns["rank"],
            columns["item"],
            columns["score"],
            explanations,
            columns["history_events"],
            columns["history_latest"],
            strict=True,
        )
    )
    _check_values(rows, source)
    return [(u, int(r), i, float(s), e, int(n), int(t)) for u, r, i, s, e, n, t in rows]


def _check_values(rows: Sequence[tuple[object, ...]], source: str) -> None:
    for user, rank, item, score, _, events, _ in rows:
        if not isinstance(rank, int) or rank < 1:
            raise DataError(f"rank must be >= 1, got {rank!r}", source=source, column="rank")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(f"score must be finite, got {score!r}", source=source, column="score")
        if not isinstance(events, int) or events < 0:
            raise DataError("history_events must be >= 0", source=source, column="history_events")
        for name, value in (("user", user), ("item", item)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH or "\x00" in value:
                raise DataError(
                    f"{name} ids must be 1..{MAX_ID_LENGTH} characters without NUL",
                    source=source,
                    column=name,
                )


def write_model_stamp(out: Path, model_dir: Path) -> None:
    """Record which saved model computed the lists in `out`, so that load-recs can refuse to
    file them under another version (the API would serve them as that version's answers)."""
    from recsemble.registry import content_hash

    stamp = {"model": str(model_dir.resolve()), "content_sha256": content_hash(model_dir)}
    (out / MODEL_STAMP).write_text(json.dumps(stamp))


def check_version(path: Path, model_version: str) -> None:
    """DataError unless `model_version` names a registry version and, when the lists carry
    the stamp of `recsemble batch`, the version holding the model they were computed with."""
    from recsemble.registry import is_version_name

    if not is_version_name(model_version):
        raise DataError(
            f"--model-version {model_version!r} is not a registry version name (such as "
            "20250101T000000.000000Z-0123456789ab, see GET /admin/models): the server would "
            "never serve these lists"
        )
    stamp_file = path / MODEL_STAMP
    if not stamp_file.is_file():
        return  # lists from elsewhere (or a single file): only the name can be checked
    try:
        stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
        model, content = str(stamp["model"]), str(stamp["content_sha256"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable model stamp ({exc})", source=str(stamp_file)) from None
    if not model_version.endswith(f"-{content[:12]}"):
        raise DataError(
            f"these lists were computed by the model in {model}, whose registry versions end "
            f"in -{content[:12]}, not by version {model_version}: load them as that model's "
            f"version, or run `recsemble batch --model` on {model_version}'s folder",
            source=str(path),
        )
