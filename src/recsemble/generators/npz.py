"""Reading the `.npz` files a generator saves, fast: each array straight from the file.

`np.load` reads a member of an (uncompressed) `.npz` through zipfile in chunks, checking a
CRC-32 of every chunk and copying twice; for the hundreds of MB of a dense EASE member that was
half of a model swap. `np.savez` stores members uncompressed, so each array's bytes lie in the
file as one run: read its header, then map the data copy-on-write (large arrays: no copy at
all, pages come from the OS cache when touched, and a write only changes a private copy) or
read it in one copy (small ones). The file's SHA-256 (checked by the manifest or the model
registry) covers integrity. Compressed members, object arrays and anything unexpected go
through `np.load` as before (never with pickle).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_LOCAL_HEADER = 30  # fixed part of a zip local file header
_NPY = ".npy"
#: Arrays from this size on are memory-mapped; smaller ones are read (a map costs a syscall).
MAP_BYTES = 1 << 20


def read_npz(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every array of `path` by name (the names np.savez gave them, without ".npy")."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if any(m.compress_type != zipfile.ZIP_STORED or not m.filename.endswith(_NPY) for m in members):
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    out = {}
    with path.open("rb") as fh:
        for member in members:
            out[member.filename[: -len(_NPY)]] = _read_member(path, fh, member)
    return out


def _read_member(path: Path, fh: Any, member: zipfile.ZipInfo) -> npt.NDArray[Any]:
    fh.seek(member.header_offset)
    header = fh.read(_LOCAL_HEADER)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    fh.seek(member.header_offset + _LOCAL_HEADER + name_length + extra_length)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise ValueError(f"{member.filename}: object arrays are not loaded (no pickle)")
    count = int(np.prod(shape, dtype=np.int64))
    order: Literal["F", "C"] = "F" if fortran else "C"
    if count * dtype.itemsize >= MAP_BYTES:
        if fh.tell() + count * dtype.itemsize > path.stat().st_size:
            raise ValueError(f"{member.filename}: the file ends inside the array")
        # Fortran order is the transposed C layout of the reversed shape.
        dims = tuple(shape) if order == "C" else tuple(shape)[::-1]
        offset = int(fh.tell())
        mapped = np.memmap(path, dtype=np.dtype(dtype), mode="c", offset=offset, shape=dims)
        view: npt.NDArray[Any] = np.asarray(mapped)  # plain ndarray; the map lives with it
        return view if order == "C" else view.T
    data = np.fromfile(fh, dtype=dtype, count=count)
    if data.size != count:
        raise ValueError(f"{member.filename}: the file ends inside the array")
    return data.reshape(tuple(shape), order=order)
