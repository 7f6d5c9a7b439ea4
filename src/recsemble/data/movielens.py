"""MovieLens releases: find the files, download the official archive when missing, load.

A release lives at `<data_dir>/<name>/` (or in `<data_dir>` itself when that already is the
release's folder). data_dir: the argument, else $RECSEMBLE_DATA, else ~/.cache/recsemble/data.
Ratings become interactions with event "rating" and the rating in `value`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

import polars as pl
from rich.console import Console
from rich.progress import Progress

from recsemble.data.dataset import Dataset
from recsemble.data.loaders import interactions_frame, items_frame, resolve_columns, users_frame
from recsemble.data.tables import Table, parse_ids, parse_strings, read_table
from recsemble.errors import DatasetNotFoundError

MOVIELENS_NAMES = ("ml-100k", "ml-latest-small", "ml-1m", "ml-20m", "ml-25m")
BASE_URL = "https://files.grouplens.org/datasets/movielens"
#: MD5 of the official archives. ml-latest-small changes between releases: it is checked against
#: the `.md5` file GroupLens publishes beside it instead.
PINNED_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
_CSV_FILES = ("ratings.csv", "movies.csv")
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u.data", "u.item", "u.user", "u.genre"),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat"),
    "ml-latest-small": _CSV_FILES,
    "ml-20m": _CSV_FILES,
    "ml-25m": _CSV_FILES,
}
_OPTIONAL_FILES = ("tags.csv",)
_RATINGS = ["user_id", "item_id", "value", "timestamp"]
#: ml-1m users.dat occupation codes (from the release's README).
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

#: Opens a URL for reading (urllib.request.urlopen by default; tests pass a fake).
Opener = Callable[[str], BinaryIO]


def default_data_dir() -> Path:
    """$RECSEMBLE_DATA, else ~/.cache/recsemble/data."""
    env = os.environ.get("RECSEMBLE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recsemble" / "data"


def find_release(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder holding the release's files, or None."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    candidates = [root / name]
    if root.name == name or root.name not in MOVIELENS_NAMES:  # never ml-20m files for ml-25m
        candidates.append(root)
    for folder in candidates:
        if all((folder / f).is_file() for f in REQUIRED_FILES[name]):
            return folder
    return None


def detect_release(folder: Path) -> str | None:
    """Which release's files a folder holds (the CSV releases share a layout)."""
    if folder.name in MOVIELENS_NAMES and find_release(folder.name, folder) is not None:
        return folder.name
    for name in ("ml-100k", "ml-1m", "ml-latest-small"):
        if all((folder / f).is_file() for f in REQUIRED_FILES[name]):
            return name
    return None


def ensure_release(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    opener: Opener | None = None,
) -> Path:
    """The release's folder, downloading and checking the official archive if files are missing."""
    if name not in MOVIELENS_NAMES:
        raise DatasetNotFoundError(f"unknown MovieLens release {name!r}; known: {MOVIELENS_NAMES}")
    found = find_release(name, data_dir)
    if found is not None:
        return found
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    url = f"{BASE_URL}/{name}.zip"
    if not download:
        raise _not_found(name, root, url, "downloads are switched off")
    try:
        _download(name, url, root, opener or _urlopen)
    except DatasetNotFoundError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _not_found(name, root, url, f"downloading it failed: {exc}") from exc
    return root / name


def load_movielens(
    name: str,
    data_dir: str | Path | None = None,
    *,
    event_weights: Mapping[str, float] | None = None,
    download: bool = True,
    opener: Opener | None = None,
) -> Dataset:
    """A MovieLens release as a Dataset (items without ratings stay in the catalog)."""
    folder = ensure_release(name, data_dir, download=download, opener=opener)
    if name == "ml-100k":
        frames = _read_100k(folder)
    elif name == "ml-1m":
        frames = _read_1m(folder)
    else:
        frames = _read_csv_release(folder)
    ratings, items, users = frames
    return Dataset.from_frames(ratings, items, users, event_weights=event_weights, name=name)


# ---------------------------------------------------------------------------- readers
Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]


def _ratings(path: Path, separator: str | None = None) -> pl.DataFrame:
    names = _RATINGS if separator is not None else None
    table = read_table(path, separator=separator, names=names, quote=None)
    return interactions_frame(table).with_columns(event=pl.lit("rating"))


def _read_100k(folder: Path) -> Frames:
    genres = _genres(folder / "u.genre")
    flags = [f"genre:{g}" for g in genres]
    names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
    table = read_table(
        folder / "u.item", separator="|", names=names, encoding="latin-1", quote=None
    )
    # One 0/1 column per genre, in u.genre order -> the list of the genres flagged 1.
    flagged = [
        pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, genres, strict=True)
    ]
    categories = table.frame.select(pl.concat_list(flagged).list.drop_nulls()).to_series()
    items = pl.DataFrame(
        [
            parse_ids(table, "item_id", "item_id"),
            parse_strings(table, "title", "title", required=False),
            _release_dates(table),
            parse_strings(table, "imdb_url", "imdb_url", required=False),
            categories.alias("categories"),
        ]
    )
    user_names = ["user_id", "age", "gender", "occupation", "zip"]
    users = users_frame(read_table(folder / "u.user", separator="|", names=user_names, quote=None))
    users = users.with_columns(pl.col("zip").cast(pl.String))
    return _ratings(folder / "u.data", "\t"), items, users


def with_title_year(items: pl.DataFrame) -> pl.DataFrame:
    """created_at = 1 January of the year in a title like "Heat (1995)": these releases carry
    no date column, and an item's age is a strong signal for rankers."""
    year = pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32, strict=False)
    stamp = pl.datetime(year, 1, 1).dt.epoch("s")
    return items.with_columns(pl.when(year.is_not_null()).then(stamp).alias("created_at"))


def _genres(path: Path) -> list[str]:
    """u.genre: "name|index" lines (and a blank last line) -> names in index order."""
    pairs = [line.rsplit("|", 1) for line in path.read_text("latin-1").splitlines() if "|" in line]
    return [name for name, _ in sorted(pairs, key=lambda pair: int(pair[1]))]


def _release_dates(table: Table) -> pl.Series:
    text = parse_strings(table, "release_date", "release_date", required=False)
    stamps = text.str.to_datetime("%d-%b-%Y", strict=False).dt.epoch("s")
    table.check(
        stamps.is_null() & text.is_not_null(),
        "release_date",
        lambda r: f"cannot parse release date {text[r]!r} (expected like 01-Jan-1995)",
    )
    return stamps.alias("created_at")


def _read_1m(folder: Path) -> Frames:
    movies = read_table(
        folder / "movies.dat",
        separator="::",
        names=["item_id", "title", "genres"],
        encoding="latin-1",
        quote=None,
    )
    user_names = ["user_id", "gender", "age", "occupation", "zip"]
    users = users_frame(
        read_table(folder / "users.dat", separator="::", names=user_names, quote=None)
    )
    occupation = pl.col("occupation").cast(pl.String)
    users = users.with_columns(
        occupation.replace_strict(
            [str(i) for i in range(len(ML1M_OCCUPATIONS))],
            list(ML1M_OCCUPATIONS),
            default=occupation,
        ),
        pl.col("zip").cast(pl.String),
    )
    return _ratings(folder / "ratings.dat", "::"), with_title_year(items_frame(movies)), users


def _read_csv_release(folder: Path) -> Frames:
    items = with_title_year(items_frame(read_table(folder / "movies.csv"))).with_columns(
        pl.col("categories").list.eval(pl.element().filter(pl.element() != "(no genres listed)"))
    )
    if (folder / "tags.csv").is_file():
        items = items.join(
            _tags(read_table(folder / "tags.csv")), on="item_id", how="left", maintain_order="left"
        )
    return _ratings(folder / "ratings.csv"), items, None


def _tags(table: Table) -> pl.DataFrame:
    """item_id -> its distinct tags joined with ", " (in file order), as the item `text`."""
    cols = resolve_columns(table, ["item_id"], ["item_id"])
    if "tag" not in table.frame.columns:
        raise table.error(f"no tag column; found {table.frame.columns}", column="tag")
    frame = pl.DataFrame(
        [
            parse_ids(table, cols["item_id"], "item_id"),
            parse_strings(table, "tag", "text", required=False),
        ]
    )
    return (
        frame.drop_nulls()
        .unique(maintain_order=True)
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("text").str.join(", "))
    )


# ---------------------------------------------------------------------------- download
def _urlopen(url: str) -> BinaryIO:
    return cast(BinaryIO, urllib.request.urlopen(url, timeout=60))


def _not_found(name: str, root: Path, url: str, why: str) -> DatasetNotFoundError:
    folder = root / name
    wanted = [f for f in REQUIRED_FILES[name] if not (folder / f).is_file()]
    return DatasetNotFoundError(
        f"MovieLens {name} needs {', '.join(str(folder / f) for f in wanted)} (also looked in "
        f"{root}); {why}. Download {url} and unzip it into {root}, or point --data-dir or "
        "RECSEMBLE_DATA at a folder that holds it."
    )


def _download(name: str, url: str, root: Path, opener: Opener) -> None:
    expected = PINNED_MD5.get(name) or _published_md5(url, opener)
    root.mkdir(parents=True, exist_ok=True)
    part = root / f"{name}.zip.part"
    try:
        digest = _fetch(url, part, opener)
        if digest != expected:
            raise DatasetNotFoundError(
                f"{url} failed its checksum (md5 {digest}, expected {expected}); the download was "
                "deleted. Try again, or download and unzip it yourself."
            )
        _extract(part, root / name, name)
    finally:
        part.unlink(missing_ok=True)


def _published_md5(url: str, opener: Opener) -> str:
    """GroupLens's sidecar: "MD5 (ml-latest-small.zip) = <hex>"."""
    with opener(url + ".md5") as response:
        text = response.read().decode("ascii", errors="replace")
    match = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if match is None:
        raise DatasetNotFoundError(f"{url}.md5 holds no MD5 checksum: {text[:200]!r}")
    return match.group(1).lower()


def _fetch(url: str, dest: Path, opener: Opener) -> str:
    """Stream url into dest; return the MD5 hex digest."""
    md5 = hashlib.md5(usedforsecurity=False)
    with opener(url) as response, dest.open("wb") as out, _progress(response, url) as advance:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            md5.update(chunk)
            advance(len(chunk))
    return md5.hexdigest()


@contextmanager
def _progress(response: Any, url: str) -> Iterator[Callable[[int], None]]:
    console = Console(stderr=True)
    headers = getattr(response, "headers", None)
    size = headers.get("Content-Length") if headers is not None else None
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"downloading {url}", total=float(size) if size else None)
        yield lambda n: progress.advance(task, n)


def _extract(archive_path: Path, folder: Path, name: str) -> None:
    """Extract only the release's data files, each written whole before it gets its name."""
    wanted = {*REQUIRED_FILES[name], *_OPTIONAL_FILES}
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = {
                PurePosixPath(m).name: m
                for m in archive.namelist()
                if PurePosixPath(m).name in wanted
            }
            missing = [f for f in REQUIRED_FILES[name] if f not in members]
            if missing:
                raise DatasetNotFoundError(f"the {name} archive lacks {missing}")
            folder.mkdir(parents=True, exist_ok=True)
            for filename, member in members.items():
                tmp = folder / f"{filename}.part"
                with archive.open(member) as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.replace(folder / filename)
    except zipfile.BadZipFile as exc:
        raise DatasetNotFoundError(
            f"the downloaded {name} archive is not a valid zip: {exc}"
        ) from exc
