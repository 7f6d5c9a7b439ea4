"""CandidateGenerator: the small interface every ensemble member implements.

Batch-first: `recommend` and `score` take arrays of user idx. Config is one typed, frozen
pydantic model per generator that rejects unknown keys. Fitted state ends in `_` and is saved as
`.npz` arrays plus a JSON manifest (never pickle).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError, NotFittedError
from recsemble.files import sha256_file
from recsemble.generators.config import GeneratorConfig
from recsemble.generators.history import Histories, history_values
from recsemble.generators.npz import read_npz
from recsemble.generators.score_cache import ScoreCache
from recsemble.generators.topk import topk_rows
from recsemble.types import PAD_IDX, TopK, check_k, idx_array, moments, user_idx

#: Dense score blocks are kept under this many cells (float32: 64 MB).
_BLOCK_CELLS = 16_000_000
FORMAT = "recsemble.generator"
FORMAT_VERSION = 1
_HISTORY_KEYS = ("indptr", "items", "timestamps", "weights")


class CandidateGenerator(ABC):
    """fit(dataset) -> self; batch recommend / score over user idx.

    `at` gives, per requested user, the moment of the recommendation (epoch seconds); members
    that use time (trending, recency) only count what was known then. None means "now": the
    latest timestamp seen in fit. `histories` (one row per requested user) replaces the fitted
    histories, e.g. with events that arrived after fit; members fold them in where the model
    allows. Users the model never saw get the model's fallback answer, never an exception.
    """

    name: ClassVar[str]
    Config: ClassVar[type[GeneratorConfig]]

    def __init__(self, config: GeneratorConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}")
        base = config if config is not None else self.Config()
        self.config = (
            self.Config.model_validate({**base.model_dump(exclude_unset=True), **overrides})
            if overrides
            else base
        )

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def _fit(self, dataset: Dataset) -> None:
        """Learn the model's own state from `dataset` (attributes ending in `_`)."""

    @abstractmethod
    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        """Dense scores (len(users), n_items) for a block; -inf = cannot recommend.

        histories row r is the history of users[r] (empty for users never seen).
        """

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The fitted arrays that `save` writes (beyond histories and sizes)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved yet")

    def _set_state(self, state: dict[str, npt.NDArray[Any]]) -> None:
        """Restore what `_state` returned."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded yet")

    def _save_files(self, folder: Path) -> list[str]:
        """Write files beyond arrays.npz (e.g. a torch state dict); returns their names, which
        the manifest checksums. Called after `_state`."""
        return []

    def _load_files(self, folder: Path) -> None:  # noqa: B027 (a hook: most need nothing)
        """Read what `_save_files` wrote (checksums already verified). Called after
        `_set_state`."""

    # -- fitting ------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        """Learn from `dataset`; returns self."""
        self._fit(dataset)
        ts = dataset.column("timestamp")
        self.n_users_ = dataset.n_users
        self.n_items_ = dataset.n_items
        self.now_ = int(ts.max()) if ts.size else 0
        self.histories_ = Histories.from_dataset(dataset)
        self.history_values_ = history_values(dataset)  # kept for retraining (ratings)
        self._finish_fit()
        return self

    #: The scores are a function of the user's history (and the fitted state) alone.
    history_only_scores: ClassVar[bool] = False

    def _finish_fit(self) -> None:
        """Once the fitted state and the histories are set (a fit here or on Spark)."""
        self._after_fit()
        self._build_score_cache()

    def _after_fit(self) -> None:  # noqa: B027 (a hook: most need nothing)
        """What needs the fitted state and the histories (both set when this runs)."""

    def _build_score_cache(self) -> None:
        self.score_cache_ = None
        if self._caches_scores():
            self.score_cache_ = ScoreCache.build(self.histories_, self._fitted_scores)

    def _caches_scores(self) -> bool:
        """Whether the longest fitted histories' scores are kept (score_cache.py): only for
        members whose scores depend on the history alone (history_only_scores), not on the
        request's moment (a half-life in days moves them with it)."""
        return self.history_only_scores and getattr(self.config, "half_life_days", None) is None

    def _fitted_scores(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Scores of fitted users `rows` (their row in histories_ is their user idx)."""
        users = rows.astype(np.int32)
        at = np.full(rows.size, self.now_, dtype=np.int64)
        return self._score_block(users, at, self.histories_.rows(rows))

    def _scores(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        """_score_block's answer, read from the score cache for the rows it keeps."""
        cache = getattr(self, "score_cache_", None)
        if cache is None:
            return self._score_block(users, at, histories)

        def compute(rows: npt.NDArray[np.int64] | None) -> npt.NDArray[np.float32]:
            if rows is None:
                return self._score_block(users, at, histories)
            return self._score_block(users[rows], at[rows], histories.rows(rows))

        out: npt.NDArray[np.float32] = cache.answer(histories, self.histories_, compute)
        return out

    def _check_fitted(self) -> None:
        if getattr(self, "histories_", None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(dataset) first")

    # -- answering ----------------------------------------------------------------------
    def _request(
        self, users: npt.ArrayLike, at: npt.ArrayLike | None, histories: Histories | None
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], Histories]:
        self._check_fitted()
        user_arr = user_idx(users)
        at_arr = moments(at, user_arr.shape[0], self.now_)
        if histories is None:
            histories = self.histories_.rows(user_arr)
        else:
            histories.check_batch(user_arr.shape[0], self.n_items_)
        return user_arr, at_arr, histories

    def score(
        self,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        *,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> npt.NDArray[np.float32]:
        """Scores (len(users), len(items)) of the given candidate items for each user."""
        user_arr, at_arr, hist = self._request(users, at, histories)
        item_arr = idx_array(items, "items", self.n_items_).astype(np.intp)
        out = np.empty((user_arr.size, item_arr.size), dtype=np.float32)
        for lo, hi in self._blocks(user_arr.size):
            block = self._scores(user_arr[lo:hi], at_arr[lo:hi], hist.rows(range(lo, hi)))
            out[lo:hi] = block[:, item_arr]
        return out

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> TopK:
        """Top-k items per user, best first; ties go to the lower item idx."""
        k = check_k(k)
        user_arr, at_arr, hist = self._request(users, at, histories)
        items = np.full((user_arr.size, k), PAD_IDX, dtype=np.int32)
        scores = np.full((user_arr.size, k), -np.inf, dtype=np.float32)
        for lo, hi in self._blocks(user_arr.size):
            block_hist = hist.rows(range(lo, hi))
            block = self._scores(user_arr[lo:hi], at_arr[lo:hi], block_hist)
            if exclude_seen:
                block_hist.mask_seen(block)
            items[lo:hi], scores[lo:hi] = topk_rows(block, k)
        return TopK(items, scores)

    def score_catalog(
        self,
        users: npt.ArrayLike,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> npt.NDArray[np.float32]:
        """Dense scores (len(users), n_items) over the whole catalog; -inf = cannot recommend.

        One block: the caller keeps len(users) x n_items within its memory budget.
        """
        user_arr, at_arr, hist = self._request(users, at, histories)
        block = self._scores(user_arr, at_arr, hist)
        if exclude_seen:
            hist.mask_seen(block)
        return block

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The k items most similar to each given item (itself excluded), where the model has
        an item-item notion of similarity; others raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} has no item-item similarity")

    def _similar_request(self, items: npt.ArrayLike, k: int) -> npt.NDArray[np.intp]:
        """similar_items' checked arguments: a fitted model, k >= 1, items within the catalog."""
        self._check_fitted()
        check_k(k)
        return idx_array(items, "items", self.n_items_).astype(np.intp)

    def _blocks(self, n: int) -> list[tuple[int, int]]:
        step = max(1, _BLOCK_CELLS // max(1, self.n_items_))
        return [(lo, min(n, lo + step)) for lo in range(0, n, step)]

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write `path/manifest.json` and `path/arrays.npz`; returns the folder."""
        self._check_fitted()
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise DataError("is a file, not a folder to save a model in", source=str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"model.{key}": value for key, value in self._state().items()}
        for key in _HISTORY_KEYS:
            arrays[f"history.{key}"] = getattr(self.histories_, key)
        values = getattr(self, "history_values_", None)
        if values is not None:
            arrays["history.values"] = values
        cache = getattr(self, "score_cache_", None)
        if cache is not None:  # saved, so a load (a hot swap) need not score them again
            arrays["score_cache.slot"], arrays["score_cache.scores"] = cache.slot, cache.scores
        np.savez(folder / "arrays.npz", **arrays)  # type: ignore[arg-type]
        extra = {name: sha256_file(folder / name) for name in self._save_files(folder)}
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generator": self.name,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "now": self.now_,
            "arrays_sha256": sha256_file(folder / "arrays.npz"),
            **({"files_sha256": extra} if extra else {}),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | Path, *, verified: bool = False) -> CandidateGenerator:
        """Read a generator written by `save` (any kind when called on the base class).

        verified: every file was checked against its checksum moments ago (the model registry
        does before it serves a version), so they are not hashed a second time."""
        folder = Path(path)
        manifest = _read_manifest(folder, check_files=not verified)
        model = _empty_model(cls, folder, manifest)
        arrays = read_npz(folder / "arrays.npz")
        model.histories_ = Histories(
            indptr=arrays["history.indptr"],
            items=arrays["history.items"],
            timestamps=arrays["history.timestamps"],
            weights=arrays["history.weights"],
            n_items=model.n_items_,
        )
        model.history_values_ = arrays.get("history.values")
        state = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
        model._set_state(state)
        model._load_files(folder)
        model.score_cache_ = None
        if "score_cache.slot" in arrays and model._caches_scores():
            try:
                model.score_cache_ = ScoreCache.loaded(
                    arrays["score_cache.slot"], arrays["score_cache.scores"], model.histories_
                )
            except ValueError as exc:
                raise DataError(str(exc), source=str(folder)) from None
        elif model._caches_scores():  # saved before the cache existed
            model._build_score_cache()
        return model


def _empty_model(
    cls: type[CandidateGenerator], folder: Path, manifest: dict[str, Any]
) -> CandidateGenerator:
    """The manifest's generator with its config and sizes, before its arrays are read."""
    from recsemble.generators import GENERATORS

    name = manifest.get("generator")
    kind = GENERATORS.get(name) if isinstance(name, str) else None
    if kind is None or (cls is not CandidateGenerator and kind is not cls):
        wanted = "a known generator" if cls is CandidateGenerator else cls.name
        raise DataError(f"holds a {name!r} generator, not {wanted}", source=str(folder))
    try:  # a pydantic ValidationError is a ValueError
        model = kind(kind.Config.model_validate(manifest["config"]))
        model.n_users_, model.n_items_ = int(manifest["n_users"]), int(manifest["n_items"])
        model.now_ = int(manifest["now"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"malformed manifest ({type(exc).__name__}: {exc})", source=str(folder)
        ) from None
    return model


def _read_manifest(folder: Path, check_files: bool = True) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise DataError("no manifest.json: not a saved generator", source=str(folder)) from None
    except NotADirectoryError:
        raise DataError(
            "not a folder: give a saved generator's folder", source=str(folder)
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"manifest is not valid JSON ({exc.msg})", source=str(folder)) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise DataError(
            f"unsupported format {manifest.get('format')!r} v{manifest.get('version')}",
            source=str(folder),
        )
    if not check_files:
        return manifest
    if sha256_file(folder / "arrays.npz") != manifest.get("arrays_sha256"):
        raise DataError("arrays.npz does not match its manifest checksum", source=str(folder))
    for name, digest in manifest.get("files_sha256", {}).items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise DataError(f"{name} is missing or does not match its checksum", source=str(folder))
    return manifest
