"""The files of a saved model's folder: written whole or not at all, checked before reading.

A save writes into a fresh sibling folder and swaps it in, so a failed save leaves the old
model; a load checks every file against the sha256 the manifest lists before reading it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recsemble.errors import DataError
from recsemble.files import file_above, sha256_file
from recsemble.ranking.ids import read_json_object

MANIFEST = "manifest.json"
MEMBERS_DIR = "members"

Arrays = dict[str, npt.NDArray[Any]]


def safe_name(label: str) -> str:
    """A folder name for a member label (views add '@' and ','); the manifest maps it back."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "member"


def check_model_folder(target: Path) -> None:
    """A model may be saved at target: nothing there, an empty folder or a saved model."""
    if target.exists() and not target.is_dir():
        raise DataError("is a file, not a folder to save a model in", source=str(target))
    blocker = file_above(target)
    if blocker is not None:
        raise DataError(f"{blocker} is a file, not a folder", source=str(target))
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise DataError(
            "folder exists and does not hold a saved model; not overwriting it", source=str(target)
        )


def replace_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Write into a fresh sibling folder, then swap it in: a failed save leaves the old model."""
    check_model_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.saving")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def verify_files(folder: Path, files: Any, hash_files: bool = True) -> None:
    if not isinstance(files, dict) or not files:
        raise DataError("manifest lists no files", source=str(folder / MANIFEST))
    for relative, digest in files.items():
        path = folder / relative
        if not path.is_file():
            raise DataError("file listed in the manifest is missing", source=str(path))
        if not hash_files or _checked_by_member(relative):
            continue
        if sha256_file(path) != digest:
            raise DataError("file does not match its checksum in the manifest", source=str(path))


def _checked_by_member(relative: str) -> bool:
    """A member's arrays, which its own load checks against the checksum in its manifest.json
    (itself checked here): hashing the largest files once instead of twice speeds up loading."""
    return relative.startswith(f"{MEMBERS_DIR}/") and relative.endswith("/arrays.npz")


def read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, missing=f"no {path.name}: not a saved model")


def read_npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DataError("file is missing", source=str(path)) from None
    except Exception as exc:  # a damaged zip or an object array: never unpickle
        raise DataError(
            f"cannot read arrays ({type(exc).__name__}: {exc})", source=str(path)
        ) from None
