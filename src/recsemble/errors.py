"""The few exception types users catch."""

from __future__ import annotations


class RecsembleError(Exception):
    """Base class of every error recsemble raises on purpose."""


class ConfigError(RecsembleError, ValueError):
    """A configuration value or key is invalid."""


class NotRecommendableError(RecsembleError, ValueError):
    """A valid question about an item that is in no answer to the user (e.g. why an item of
    their own history would be recommended to them)."""


class DataError(RecsembleError, ValueError):
    """Input data is malformed. The message names the file, line and column when known."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class DatasetNotFoundError(RecsembleError, FileNotFoundError):
    """A named dataset's files are missing and could not be downloaded."""


class NotFittedError(RecsembleError, RuntimeError):
    """A model was used before `fit` was called."""
