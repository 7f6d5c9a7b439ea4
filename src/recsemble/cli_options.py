"""Command-line options shared by every command module (one definition, one help text)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from recsemble.config import DataConfig

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: section.key=value (repeatable)."),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where datasets live (default: $RECSEMBLE_DATA).", show_default=False
    ),
]


def check_outputs(
    files: dict[str, Path | None] | None = None, folders: dict[str, Path | None] | None = None
) -> None:
    """Before any work: each output file's path is not a folder (nor under a file), each
    output folder's path is not a file. Keys are the flags, named in the error."""
    from recsemble.errors import ConfigError
    from recsemble.files import file_above

    for flag, path in (files or {}).items():
        if path is not None and path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder; give the path of a file to write")
    for flag, path in (folders or {}).items():
        if path is not None and path.exists() and not path.is_dir():
            raise ConfigError(f"{flag} {path} is a file; give a folder to write into")
    for flag, path in {**(files or {}), **(folders or {})}.items():
        blocker = None if path is None else file_above(path)
        if blocker is not None:
            raise ConfigError(f"{flag} {path}: {blocker} is a file, not a folder")


def data_paths(data: DataConfig, input_path: Path | None = None) -> list[Path]:
    """The input data's files or folders that exist (a MovieLens name: its folder)."""
    found = [] if input_path is None else [input_path]
    if data.dataset:
        found.append(Path(data.dataset))
        if data.data_dir:
            found.append(Path(data.data_dir) / data.dataset)
    return [path for path in found if path.exists()]


def check_not_inputs(outputs: dict[str, Path | None], inputs: Sequence[Path]) -> None:
    """No output may write over, or into, the input data (a --json naming the data file
    replaced the data with results)."""
    from recsemble.errors import ConfigError

    for flag, path in outputs.items():
        if path is None:
            continue
        target = path.resolve()
        for source in inputs:
            origin = source.resolve()
            if target == origin:
                raise ConfigError(f"{flag} {path} would write over the input data {source}")
            if origin.is_dir() and origin in target.parents:
                raise ConfigError(f"{flag} {path} would write into the input data folder {source}")
