"""File helpers shared by every saved artefact (generator folders, ensembles, the registry)
and by the checks of paths that will be written."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
