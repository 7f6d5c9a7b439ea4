"""Model versions on disk: immutable copies of saved model folders and a movable "current".

    root/
      versions/<version>/   a saved model folder (`recsemble train --out`), copied, never
                            changed again, plus version.json: sha256 of every file, the data
                            snapshot hash, config, metrics, created_at
      CURRENT               the published version and the publish history (JSON), replaced
                            atomically (CURRENT.tmp, fsync, rename)
      .lock                 flock'ed by whoever changes anything (processes and threads)

A version is `<UTC timestamp>-<first 12 hex of the content hash>`: names sort by creation time
and say what they hold. `add` copies into a hidden staging folder, fsyncs it and renames it
into place, so a version folder is complete or absent. `publish` and `rollback` verify every
checksum of the version they switch to first: a corrupt or partial version is refused with a
DataError naming the bad file, and the pointer keeps naming the version that was serving. The
pointer and its history are one file, so they can never disagree. Nothing here unpickles.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsemble.errors import DataError, RecsembleError
from recsemble.files import copy_durably, fsync_dir, fsync_tree, sha256_file, write_durably

log = logging.getLogger(__name__)

FORMAT = "recsemble.registry-version"
FORMAT_VERSION = 1
VERSION_FILE = "version.json"
POINTER_FILE = "CURRENT"
LOCK_FILE = ".lock"
VERSIONS_DIR = "versions"
MODEL_MANIFEST = "manifest.json"
HISTORY_LIMIT = 100  # publishes remembered for rollback
STALE_STAGING_S = 3600  # an add's staging folder older than this was left by a killed add
_VERSION_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{12}$")


class UnknownVersionError(RecsembleError, KeyError):
    """No version of that name in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class VersionInfo:
    """What version.json says about one version."""

    version: str
    created_at: str  # ISO 8601, UTC
    path: Path
    files: dict[str, str]  # path inside the version folder -> sha256
    size_bytes: int
    model_format: str | None  # the saved model's manifest "format"
    data_hash: str | None
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class _Pointer:
    current: str | None
    history: list[dict[str, str]]  # {"version", "published_at"}, oldest first; last = current


class ModelRegistry:
    """Versions under `root` (see the module docstring). Safe to share between processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / VERSIONS_DIR
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission: one line, not a traceback
            raise DataError(f"cannot create the registry folder ({exc.strerror}: "
                            f"{exc.filename})", source=str(self.root)) from None  # fmt: skip

    # -- versions --------------------------------------------------------------------------
    def add(
        self,
        model_dir: str | Path,
        *,
        metrics: Mapping[str, Any] | None = None,
        data_hash: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> str:
        """Copy a saved model folder in as a new immutable version; returns its name."""
        source = Path(model_dir)
        relative_paths = _model_files(source)
        extra = _metadata(metrics=metrics, data_hash=data_hash, config=config)
        created = datetime.now(UTC)
        staging = Path(tempfile.mkdtemp(prefix=".adding-", dir=self.versions_dir))
        try:
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server user
            digests = {rel: copy_durably(source / rel, staging / rel) for rel in relative_paths}
            model_format = _check_model_manifest(source, digests)
            content = _content_hash(digests)
            version = f"{created:%Y%m%dT%H%M%S.%f}Z-{content[:12]}"
            record = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "version": version,
                "created_at": created.isoformat(),
                "source": str(source.resolve()),
                "model_format": model_format,
                "content_sha256": content,
                "files": digests,
                **extra,
            }
            write_durably(staging / VERSION_FILE, json.dumps(record, indent=1).encode())
            fsync_tree(staging)
            with self._locked():
                self._remove_stale_staging()
                target = self.versions_dir / version
                if target.exists():
                    raise DataError("version already exists", source=str(target))
                os.replace(staging, target)
                fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def find(self, model_dir: str | Path) -> str | None:
        """The version holding exactly this saved model folder's files (None: none does), so a
        server restarted with the same --model does not add a copy of it each time."""
        content = content_hash(model_dir)
        for info in self.versions():
            if info.version.endswith(content[:12]) and _content_hash(info.files) == content:
                return info.version
        return None

    def versions(self) -> list[VersionInfo]:
        """Every complete version, oldest first (an unreadable one is logged and left out)."""
        found = []
        for folder in sorted(self.versions_dir.iterdir()):
            if not _VERSION_NAME.match(folder.name) or not folder.is_dir():
                continue
            try:
                found.append(self._info(folder.name))
            except DataError as exc:
                log.warning("registry: leaving out %s: %s", folder.name, exc)
        return found

    def path(self, version: str) -> Path:
        """The folder of a version (UnknownVersionError if there is none)."""
        if not isinstance(version, str) or not _VERSION_NAME.match(version):
            raise UnknownVersionError(f"{version!r} is not a version name")
        folder = self.versions_dir / version
        if not folder.is_dir():
            raise UnknownVersionError(f"no version {version!r} in {self.root}")
        return folder

    def verify(self, version: str) -> VersionInfo:
        """Check every file against version.json: none missing, none extra, none altered."""
        info = self._info(version)
        actual = _model_files(info.path, manifest=None) - {VERSION_FILE}
        missing, extra = sorted(set(info.files) - actual), sorted(actual - set(info.files))
        if missing:
            raise DataError(
                "file listed in version.json is missing", source=str(info.path / missing[0])
            )
        if extra:
            raise DataError("file is not listed in version.json", source=str(info.path / extra[0]))
        for rel, digest in sorted(info.files.items()):
            if sha256_file(info.path / rel) != digest:
                raise DataError(
                    "file does not match its sha256 in version.json", source=str(info.path / rel)
                )
        return info

    def _remove_stale_staging(self) -> None:
        """Staging folders an add killed mid-copy left behind (none is copied for an hour)."""
        cutoff = time.time() - STALE_STAGING_S
        for folder in self.versions_dir.glob(".adding-*"):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    # -- the current pointer ---------------------------------------------------------------
    def current(self) -> str | None:
        """The published version, None before the first publish."""
        return self._read_pointer().current

    def history(self) -> list[dict[str, str]]:
        """Publishes remembered for rollback, oldest first; the last one is current."""
        return self._read_pointer().history

    def publish(self, version: str) -> None:
        """Make `version` current (after verifying it), remembering the one it replaces."""
        with self._locked():
            self.verify(version)
            pointer = self._read_pointer()
            if pointer.current == version:
                return
            entry = {"version": version, "published_at": datetime.now(UTC).isoformat()}
            self._write_pointer(_Pointer(version, [*pointer.history, entry][-HISTORY_LIMIT:]))

    def previous(self) -> str | None:
        """The version `rollback` would go back to (None when there is none)."""
        history = self._read_pointer().history
        return history[-2]["version"] if len(history) >= 2 else None

    def store_cursor(self, version: str, store_id: str | None = None) -> int:
        """The last store event seq the version was trained on (0: trained from files only,
        or on another store's log than the one `store_id` names: its seqs mean nothing here)."""
        config = self._info(version).config or {}
        cursor, trained_on = config.get("store_cursor", 0), config.get("store_id")
        if store_id is not None and trained_on is not None and trained_on != store_id:
            return 0
        return int(cursor) if isinstance(cursor, int) else 0

    def store_event(self, version: str) -> str | None:
        """The event_id at the version's store cursor (None: not recorded), by which a store
        restored from an older copy, whose seqs were given again to other events, is told."""
        event = (self._info(version).config or {}).get("store_event")
        return event if isinstance(event, str) else None

    def rollback(self) -> str:
        """Go back to the version published before the current one; returns it."""
        with self._locked():
            pointer = self._read_pointer()
            if len(pointer.history) < 2:
                raise DataError(
                    "no previously published version to roll back to",
                    source=str(self.root / POINTER_FILE),
                )
            history = pointer.history[:-1]
            previous = history[-1]["version"]
            self.verify(previous)
            self._write_pointer(_Pointer(previous, history))
            return previous

    # -- files -----------------------------------------------------------------------------
    def _info(self, version: str) -> VersionInfo:
        folder = self.path(version)
        where = str(folder / VERSION_FILE)
        try:
            record = json.loads((folder / VERSION_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("no version.json: a partial or foreign version", source=where) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"version.json is not valid JSON ({exc})", source=where) from None
        try:
            if record["format"] != FORMAT or record["version"] != version:
                raise ValueError("not this version's record")
            files = {str(rel): str(digest) for rel, digest in record["files"].items()}
            if _content_hash(files)[:12] != version.rsplit("-", 1)[1]:
                raise ValueError("its file list does not match the version's content hash")
            return VersionInfo(
                version=version,
                created_at=str(record["created_at"]),
                path=folder,
                files=files,
                size_bytes=sum(
                    (folder / rel).stat().st_size for rel in files if (folder / rel).is_file()
                ),
                model_format=record.get("model_format"),
                data_hash=record.get("data_hash"),
                config=record.get("config"),
                metrics=record.get("metrics"),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
            raise DataError(f"malformed version.json ({exc})", source=where) from None

    def _read_pointer(self) -> _Pointer:
        path = self.root / POINTER_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            history = [
                {"version": str(e["version"]), "published_at": str(e["published_at"])}
                for e in record["history"]
            ]
            current = record["current"]
            if current is not None and (not history or history[-1]["version"] != current):
                raise ValueError("current is not the last publish in the history")
        except FileNotFoundError:
            return _Pointer(None, [])
        except (UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed pointer file ({exc})", source=str(path)) from None
        return _Pointer(None if current is None else str(current), history)

    def _write_pointer(self, pointer: _Pointer) -> None:
        """Called with the lock held, so the fixed temp name is never shared."""
        record = {"current": pointer.current, "history": pointer.history}
        tmp = self.root / f"{POINTER_FILE}.tmp"
        write_durably(tmp, json.dumps(record, indent=1).encode())
        os.replace(tmp, self.root / POINTER_FILE)
        fsync_dir(self.root)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock on root/.lock: excludes other processes and other threads (each
        open() is its own open file description, and flock locks those)."""
        with (self.root / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def content_hash(model_dir: str | Path) -> str:
    """The hash a version of this saved model folder is named by (its last 12 hex digits);
    a version's own folder gives its name's (its version.json is not model content)."""
    source = Path(model_dir)
    files = _model_files(source) - {VERSION_FILE}
    return _content_hash({rel: sha256_file(source / rel) for rel in files})


def is_version_name(name: str) -> bool:
    return bool(_VERSION_NAME.match(name))


def _model_files(folder: Path, manifest: str | None = MODEL_MANIFEST) -> set[str]:
    """Relative paths of every file under `folder`; links and special files are refused."""
    if not folder.is_dir():
        raise DataError("not a folder", source=str(folder))
    if manifest is not None and not (folder / manifest).is_file():
        raise DataError(f"no {manifest}: not a saved model folder", source=str(folder))
    files = set()
    for path in folder.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise DataError("links and special files are not allowed", source=str(path))
        if path.is_file():
            files.add(path.relative_to(folder).as_posix())
    return files


def _check_model_manifest(source: Path, digests: Mapping[str, str]) -> str | None:
    """The saved model's own checksums against what was copied: a damaged or half-written
    model is refused before it becomes a version. Returns the model's format."""
    where = str(source / MODEL_MANIFEST)
    try:
        manifest = json.loads((source / MODEL_MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"manifest is not valid JSON ({exc})", source=where) from None
    if not isinstance(manifest, dict):
        raise DataError("manifest is not a JSON object", source=where)
    expected = dict(manifest.get("files") or {})
    if "arrays_sha256" in manifest:  # a single generator's folder
        expected["arrays.npz"] = manifest["arrays_sha256"]
    for rel, digest in sorted(expected.items()):
        if rel not in digests:
            raise DataError(
                "file listed in the model manifest is missing", source=str(source / rel)
            )
        if digests[rel] != digest:
            raise DataError(
                "file does not match its checksum in the model manifest", source=str(source / rel)
            )
    model_format = manifest.get("format")
    return None if model_format is None else str(model_format)


def _metadata(
    *, metrics: Mapping[str, Any] | None, data_hash: str | None, config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The caller's metadata, checked to be plain JSON now rather than at the end of a copy."""
    extra = {
        "data_hash": data_hash,
        "config": None if config is None else dict(config),
        "metrics": None if metrics is None else dict(metrics),
    }
    for name, value in extra.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: must be JSON with finite numbers ({exc})") from None
    return extra


def _content_hash(digests: Mapping[str, str]) -> str:
    lines = "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
