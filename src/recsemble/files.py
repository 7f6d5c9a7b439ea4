"""File helpers shared by every saved artefact (generator folders, ensembles, the registry)
and by the checks of paths that will be written."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

_COPY_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (model arrays reach hundreds of MB)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is a file (nothing can be written at
    `path` then), else None."""
    above = next((p for p in path.absolute().parents if p.exists()), None)
    return above if above is not None and not above.is_dir() else None


def refuse_foreign_data(folder: Path, stems: Iterable[str], marker: str) -> None:
    """DataError when `folder` holds a data file (`<stem>.*`) without the `marker` file that a
    generator leaves beside its own: generated data must never overwrite a user's."""
    from recsemble.errors import DataError

    if (folder / marker).is_file() or not folder.is_dir():
        return
    found = sorted(p.name for stem in stems for p in folder.glob(f"{stem}.*") if p.is_file())
    if found:
        raise DataError(
            f"folder holds {', '.join(found)}, not generated data ({marker} is missing); not "
            "overwriting: pass a new folder",
            source=str(folder),
        )


def copy_durably(source: Path, target: Path) -> str:
    """Copy, fsync and hash (the copy's bytes, as they were written) in one pass."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("xb") as dst:
        while chunk := src.read(_COPY_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so the entries made in it are on disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(folder: Path) -> None:
    """fsync every folder under `folder` (deepest first), so their entries are on disk."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(folder)
