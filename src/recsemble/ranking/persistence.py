"""Saving and loading a fitted model (an Ensemble or one generator) as a folder, without pickle.

An ensemble's folder:

    manifest.json        format + version, the EnsembleConfig, model params, protocol, feature
                         names, sizes, routes, training summary, member folders, sha256 of
                         every file
    members/<nn-label>/  each member as its own CandidateGenerator.save wrote it
    ranker.txt           the meta-ranker (LightGBM's text format, or the logistic weights as JSON)
    features.npz         the FeatureBuilder's fitted arrays (item timeline, categories, created_at)
    histories.npz        the users' histories the ensemble answers from
    ids.json             the external user / item ids and item titles (ranking/ids.py)
    items.parquet        the item attribute table, external ids first (absent in old folders)
    users.parquet        the user attribute table, external ids first (absent in old folders)

A single generator's folder is its own save() plus ids.json. Loading checks every checksum
before reading anything; a missing, altered or malformed file is a DataError naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import ValidationError

from recsemble.errors import DataError
from recsemble.evaluation.slices import HISTORY_SLICES
from recsemble.files import sha256_file
from recsemble.generators import CandidateGenerator
from recsemble.generators.base import FORMAT as GENERATOR_FORMAT
from recsemble.generators.history import Histories
from recsemble.ranking.blend import Blend
from recsemble.ranking.calibration import Calibrator
from recsemble.ranking.config import EnsembleConfig
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.features import FeatureBuilder
from recsemble.ranking.ids import (
    CATALOG_FILE,
    Catalog,
    IdRecommendation,
    recommend_for_ids,
    saved_event_weights,
)
from recsemble.ranking.metaranker import MetaRanker
from recsemble.ranking.model_folder import (
    MANIFEST,
    MEMBERS_DIR,
    Arrays,
    read_json,
    read_npz,
    replace_folder,
    safe_name,
    verify_files,
)
from recsemble.ranking.routing import SliceBoard
from recsemble.ranking.timeline import ItemTimeline

FORMAT = "recsemble.ensemble"
FORMAT_VERSION = 1
RANKER_FILE = "ranker.txt"
FEATURES_FILE = "features.npz"
HISTORIES_FILE = "histories.npz"
CALIBRATOR_FILE = "calibrator.json"
BLEND_FILE = "blend.json"
_HISTORY_KEYS = ("indptr", "items", "timestamps", "weights")

Model = Ensemble | CandidateGenerator


@dataclass(frozen=True)
class LoadedModel:
    """A model read back from its folder, with the ids it was fitted with."""

    model: Model
    catalog: Catalog | None
    manifest: dict[str, Any]
    folder: Path


# -- saving ----------------------------------------------------------------------------------
def save_model(model: Model, path: str | Path, catalog: Catalog | None = None) -> Path:
    """Save an Ensemble (save_ensemble) or a generator (its own save) plus the catalog."""
    if isinstance(model, Ensemble):
        return save_ensemble(model, path, catalog=catalog)
    return replace_folder(Path(path), lambda tmp: _write_generator(model, tmp, catalog))


def save_ensemble(ens: Ensemble, path: str | Path, *, catalog: Catalog | None = None) -> Path:
    """Write a fitted Ensemble to the folder `path` (replaced if it holds a saved model)."""
    ens._check_fitted()
    return replace_folder(Path(path), lambda tmp: _write_ensemble(ens, tmp, catalog))


def _write_generator(model: CandidateGenerator, folder: Path, catalog: Catalog | None) -> None:
    model.save(folder)
    if catalog is not None:
        catalog.write(folder, n_users=model.n_users_, n_items=model.n_items_)


def _write_ensemble(ens: Ensemble, folder: Path, catalog: Catalog | None) -> None:
    members = []
    for position, (label, member) in enumerate(ens.members_.items()):
        relative = f"{MEMBERS_DIR}/{position:02d}-{safe_name(label)}"
        member.save(folder / relative)
        members.append({"label": label, "model": member.name, "folder": relative})
    (folder / RANKER_FILE).write_text(ens.ranker_.to_text(), encoding="utf-8")
    for name, part in ((CALIBRATOR_FILE, ens.calibrator_), (BLEND_FILE, ens.blend_)):
        if part is not None:
            (folder / name).write_text(json.dumps(part.to_dict()), encoding="utf-8")
    np.savez(folder / FEATURES_FILE, **_feature_arrays(ens.features_))  # type: ignore[arg-type]
    histories = {key: getattr(ens.histories_, key) for key in _HISTORY_KEYS}
    values = getattr(ens, "history_values_", None)
    np.savez(folder / HISTORIES_FILE, **histories, **({} if values is None else {"values": values}))
    if catalog is not None:
        catalog.write(folder, n_users=ens.n_users_, n_items=ens.n_items_)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": ens.config.model_dump(mode="json"),
        "model_params": ens.model_params,
        "protocol": ens.protocol,
        "feature_names": list(ens.feature_names_),
        "n_users": ens.n_users_,
        "n_items": ens.n_items_,
        "now": ens.now_,
        "fit_seconds": ens.fit_seconds_,
        "members": members,
        "routes": getattr(ens, "routes_", None),  # history slice -> members run there
        "direct": getattr(ens, "direct_", {}),  # history slice -> the member serving it alone
        "slice_board": _board_dict(getattr(ens, "slice_board_", None)),
        "ranker": {"kind": ens.ranker_.kind_, "rounds": getattr(ens.ranker_, "rounds_", None)},
        "training": training_summary(ens),
        "files": {
            str(p.relative_to(folder)): sha256_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def training_summary(ens: Ensemble) -> dict[str, int] | None:
    """Counts of what the ranker learned from (None for a loaded ensemble: not saved)."""
    training = getattr(ens, "training_", None)
    if training is None:
        return None
    return {
        "requests": int(training.candidates.n_rows),
        "pairs": int(training.candidates.size),
        "positives": int(training.labels.sum()),
        "targets": int(training.n_targets),
        "features": len(training.features.names),
    }


def _feature_arrays(builder: FeatureBuilder) -> Arrays:
    timeline = builder.timeline_
    arrays: Arrays = {
        "timeline.keys": timeline.keys,
        "timeline.times": timeline.times,
        "timeline.origin": np.asarray(timeline.origin, np.int64),
        "timeline.n_items": np.asarray(timeline.n_items, np.int64),
    }
    if builder.categories_ is not None:
        cats = builder.categories_
        arrays |= {
            "categories.indptr": cats.indptr,
            "categories.indices": cats.indices,
            "categories.data": cats.data,
            "categories.shape": np.asarray(cats.shape, np.int64),
        }
    if builder.created_at_ is not None:
        arrays["created_at"] = builder.created_at_
    return arrays


# -- loading ---------------------------------------------------------------------------------
def load_model(path: str | Path, *, verified: bool = False) -> LoadedModel:
    """Read a folder written by save_model: an Ensemble or a single generator, with its ids.

    verified: the files were checked against their checksums moments ago (the model registry
    does before serving a version), so they are not hashed again."""
    folder = Path(path)
    manifest = read_json(folder / MANIFEST)
    if manifest.get("format") == GENERATOR_FORMAT:
        model: Model = CandidateGenerator.load(folder, verified=verified)
        sizes = (model.n_users_, model.n_items_)
    else:
        model = _load_ensemble(folder, manifest, verified)
        sizes = (model.n_users_, model.n_items_)
    catalog = None
    if (folder / CATALOG_FILE).exists():
        catalog = Catalog.read(folder, n_users=sizes[0], n_items=sizes[1])
    return LoadedModel(model, catalog, manifest, folder)


@dataclass(frozen=True)
class SavedSettings:
    """What a saved model was trained with: "ensemble" or a generator's name, the [ensemble]
    section (ensembles only) and the [models.*] sections."""

    model: str
    ensemble: EnsembleConfig | None
    models: dict[str, dict[str, Any]]
    event_weights: dict[str, float] = field(default_factory=dict)  # from its ids.json


def saved_settings(path: str | Path) -> SavedSettings:
    """The settings in a saved model's manifest (`recsemble train --like`; retraining)."""
    where = Path(path) / MANIFEST
    manifest = read_json(where)
    weights = saved_event_weights(Path(path))
    try:
        if manifest.get("format") == GENERATOR_FORMAT:
            name = str(manifest["generator"])
            return SavedSettings(name, None, {name: dict(manifest["config"])}, weights)
        if manifest.get("format") == FORMAT:
            params = {str(k): dict(v) for k, v in manifest["model_params"].items()}
            ensemble = EnsembleConfig.model_validate(manifest["config"])
            return SavedSettings("ensemble", ensemble, params, weights)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        message = f"malformed manifest ({type(exc).__name__}: {exc})"
        raise DataError(message, source=str(where)) from None
    raise DataError(f"not a saved model (format {manifest.get('format')!r})", source=str(where))


def load_ensemble(path: str | Path) -> Ensemble:
    """Read an Ensemble written by save_ensemble; answers exactly as the saved one did."""
    folder = Path(path)
    return _load_ensemble(folder, read_json(folder / MANIFEST))


def _load_ensemble(folder: Path, manifest: dict[str, Any], verified: bool = False) -> Ensemble:
    where = str(folder / MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise DataError(
            f"unsupported format {manifest.get('format')!r} v{manifest.get('version')} "
            f"(expected {FORMAT!r} v{FORMAT_VERSION})",
            source=where,
        )
    verify_files(folder, manifest.get("files"), hash_files=not verified)
    try:
        config = EnsembleConfig.model_validate(manifest["config"])
        ens = Ensemble(config, manifest["model_params"], protocol=str(manifest["protocol"]))
        ens.n_users_, ens.n_items_ = int(manifest["n_users"]), int(manifest["n_items"])
        ens.now_ = int(manifest["now"])
        ens.fit_seconds_ = {str(k): float(v) for k, v in manifest["fit_seconds"].items()}
        ens.feature_names_ = tuple(str(name) for name in manifest["feature_names"])
        ens.members_ = _load_members(folder, manifest["members"], ens, verified)
        ens.routes_ = _routes(manifest.get("routes"), list(ens.members_))
        ens.direct_ = _direct(manifest.get("direct") or {}, list(ens.members_))
        board = manifest.get("slice_board")
        if board is not None:
            ens.slice_board_ = SliceBoard(dict(board["ndcg"]), dict(board["users"]))
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise DataError(f"malformed manifest ({type(exc).__name__}: {exc})", source=where) from None
    ens.features_ = _load_features(folder / FEATURES_FILE, config, ens.n_items_)
    ens.histories_, ens.history_values_ = _load_histories(folder / HISTORIES_FILE, ens.n_items_)
    ens.ranker_ = _load_ranker(folder / RANKER_FILE, config, manifest.get("ranker") or {})
    if (folder / CALIBRATOR_FILE).exists():
        ens.calibrator_ = Calibrator.from_dict(read_json(folder / CALIBRATOR_FILE))
    if (folder / BLEND_FILE).exists():
        ens.blend_ = Blend.from_dict(read_json(folder / BLEND_FILE))
    expected = ens.features_.feature_names(tuple(ens.members_))
    if expected != ens.feature_names_:
        raise DataError("feature names do not match the members and features", source=where)
    return ens


def _load_members(
    folder: Path, entries: Sequence[Mapping[str, Any]], ens: Ensemble, verified: bool = False
) -> dict[str, CandidateGenerator]:
    serving = {spec.label: spec for spec in ens.serving_members}
    labels = [str(entry["label"]) for entry in entries]
    if labels != list(serving):
        raise DataError(
            f"saved members {labels} are not the config's serving members {list(serving)}",
            source=str(folder / MANIFEST),
        )
    members = {}
    for entry, label in zip(entries, labels, strict=True):
        member = CandidateGenerator.load(folder / str(entry["folder"]), verified=verified)
        if member.name != serving[label].model:
            raise DataError(
                f"member {label!r} is a {member.name!r}, the config says {serving[label].model!r}",
                source=str(folder / str(entry["folder"])),
            )
        members[label] = member
    return members


def _board_dict(board: SliceBoard | None) -> dict[str, Any] | None:
    """The validation leaderboard per slice that routing was decided on (diagnostics)."""
    return None if board is None else {"ndcg": board.ndcg, "users": board.users}


def _direct(direct: Any, labels: list[str]) -> dict[str, str]:
    """The slices served by one member alone; each must be a slice and a serving member."""
    if not isinstance(direct, dict):
        raise ValueError("direct must map history slices to members")
    out = {str(name): str(member) for name, member in direct.items()}
    bad = {n: m for n, m in out.items() if n not in HISTORY_SLICES or m not in labels}
    if bad:
        raise ValueError(f"direct routes name unknown slices or members: {bad}")
    return out


def _routes(routes: Any, labels: list[str]) -> dict[str, list[str]] | None:
    """The saved routing table, checked: every slice maps to a list of serving members."""
    if routes is None:
        return None
    if not isinstance(routes, dict) or set(routes) != set(HISTORY_SLICES):
        raise ValueError(f"routes must map the slices {list(HISTORY_SLICES)} to members")
    out = {str(name): [str(label) for label in members] for name, members in routes.items()}
    unknown = sorted({label for members in out.values() for label in members} - set(labels))
    if unknown:
        raise ValueError(f"routes name members that are not serving: {unknown}")
    return out


def _load_features(path: Path, config: EnsembleConfig, n_items: int) -> FeatureBuilder:
    arrays = read_npz(path)
    builder = FeatureBuilder(tuple(config.popularity_windows_days))
    try:
        builder.timeline_ = ItemTimeline(
            keys=arrays["timeline.keys"].astype(np.int64, copy=False),
            times=arrays["timeline.times"].astype(np.int64, copy=False),
            origin=int(arrays["timeline.origin"]),
            n_items=int(arrays["timeline.n_items"]),
        )
        builder.categories_ = None
        if "categories.indptr" in arrays:
            n_rows, n_cols = (int(x) for x in arrays["categories.shape"])
            parts = (arrays[f"categories.{key}"] for key in ("data", "indices", "indptr"))
            builder.categories_ = sp.csr_array(tuple(parts), shape=(n_rows, n_cols))
        created = arrays.get("created_at")
        builder.created_at_ = None if created is None else created.astype(np.float64, copy=False)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed feature arrays ({exc})", source=str(path)) from None
    if builder.timeline_.n_items != n_items:
        raise DataError(
            f"timeline covers {builder.timeline_.n_items} items, not {n_items}", source=str(path)
        )
    return builder


def _load_histories(path: Path, n_items: int) -> tuple[Histories, npt.NDArray[np.float32] | None]:
    """The histories and, when the model kept them, the events' explicit values."""
    arrays = read_npz(path)
    try:
        indptr, items, timestamps, weights = (arrays[key] for key in _HISTORY_KEYS)
        histories = Histories(indptr, items, timestamps, weights, n_items)
    except (KeyError, ValueError) as exc:
        raise DataError(f"malformed histories ({exc})", source=str(path)) from None
    values = arrays.get("values")
    if values is not None and values.shape != histories.items.shape:
        raise DataError("values must have one entry per history event", source=str(path))
    return histories, values


def saved_histories(folder: Path) -> tuple[Histories, npt.NDArray[np.float32] | None]:
    """What a saved model (an ensemble or a lone generator) answers from: its histories, and
    the events' explicit values (ratings) when it kept them; for exporting its training data."""
    manifest = read_json(folder / MANIFEST)
    if manifest.get("format") == FORMAT:
        return _load_histories(folder / HISTORIES_FILE, int(manifest["n_items"]))
    generator = CandidateGenerator.load(folder)
    return generator.histories_, getattr(generator, "history_values_", None)


def _load_ranker(path: Path, config: EnsembleConfig, info: Mapping[str, Any]) -> MetaRanker:
    try:
        ranker = MetaRanker.from_text(path.read_text(encoding="utf-8"), config.ranker)
    except ImportError:
        raise DataError(
            "the ranker is a LightGBM model; install lightgbm", source=str(path)
        ) from None
    except Exception as exc:  # LightGBM raises its own error type on a malformed model string
        raise DataError(f"cannot read the ranker ({exc})", source=str(path)) from None
    if info.get("rounds") is not None:
        ranker.rounds_ = int(info["rounds"])
    return ranker


# -- answering by external ids ---------------------------------------------------------------
def recommend_ids(
    model: str | Path | LoadedModel, user_ids: Sequence[str], k: int, *, exclude_seen: bool = True
) -> list[IdRecommendation]:
    """Top-k external item ids (with scores) for external user ids, from a saved model folder
    or a LoadedModel. Users the model never saw get its cold answer, not an exception."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    if loaded.catalog is None:
        raise DataError(
            f"no {CATALOG_FILE}: the model was saved without its ids", source=str(loaded.folder)
        )
    return recommend_for_ids(loaded.model, loaded.catalog, user_ids, k, exclude_seen=exclude_seen)
