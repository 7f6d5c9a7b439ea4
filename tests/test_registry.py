"""The model registry: immutable versions, checksums, atomic publish and rollback."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import threading
import time
from pathlib import Path

import pytest

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.generators import GENERATORS
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import load_model, save_model
from recsemble.registry import ModelRegistry, UnknownVersionError

VERSION_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{12}$")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_model(folder: Path, seed: int) -> Path:
    """A folder shaped like a saved ensemble: nested files and a manifest with checksums."""
    files = {
        "ranker.txt": f"tree {seed}\n".encode(),
        "members/00-pop/arrays.npz": bytes([seed % 256]) * 4096,
        "members/00-pop/manifest.json": json.dumps({"seed": seed}).encode(),
        "ids.json": json.dumps({"users": ["u1"], "items": ["i1"]}).encode(),
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    manifest = {"format": "recsemble.ensemble", "files": {rel: _sha(folder / rel) for rel in files}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def two_versions(registry: ModelRegistry, tmp_path: Path) -> tuple[str, str]:
    first = registry.add(fake_model(tmp_path / "m1", 1), metrics={"ndcg@10": 0.31})
    second = registry.add(fake_model(tmp_path / "m2", 2), metrics={"ndcg@10": 0.33})
    return first, second


def _pointer_bytes(registry: ModelRegistry) -> bytes | None:
    path = registry.root / "CURRENT"
    return path.read_bytes() if path.exists() else None


# -- adding ----------------------------------------------------------------------------------
def test_add_copies_a_saved_model_that_still_loads(
    registry: ModelRegistry, tiny: Dataset, tmp_path: Path
) -> None:
    model = GENERATORS["pop"]().fit(tiny)
    source = save_model(model, tmp_path / "pop", Catalog.from_dataset(tiny))
    version = registry.add(
        source, metrics={"ndcg@10": 0.5}, data_hash="abc123", config={"models": ["pop"]}
    )
    assert VERSION_NAME.match(version)
    info = registry.verify(version)
    assert (info.version, info.data_hash, info.model_format) == (
        version,
        "abc123",
        "recsemble.generator",
    )
    assert info.metrics == {"ndcg@10": 0.5} and info.config == {"models": ["pop"]}
    source_files = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    assert set(info.files) == source_files
    assert all(info.files[rel] == _sha(source / rel) for rel in source_files)
    (source / "ids.json").write_text("{}")  # the version is a copy, not a link
    registry.verify(version)
    loaded = load_model(registry.path(version))
    assert list(loaded.model.recommend([0], 3).items[0]) == list(model.recommend([0], 3).items[0])


def test_versions_are_listed_oldest_first_and_name_their_content(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    assert registry.versions() == []
    same = fake_model(tmp_path / "same", 5)
    names = [
        registry.add(same),
        registry.add(fake_model(tmp_path / "other", 6)),
        registry.add(same),
    ]
    assert [v.version for v in registry.versions()] == names
    assert names == sorted(names) and len(set(names)) == 3
    suffixes = [name.rsplit("-", 1)[1] for name in names]
    assert suffixes[0] == suffixes[2] != suffixes[1]  # same files, same content hash


def test_a_root_that_cannot_be_a_folder_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot create the registry folder"):
        ModelRegistry(tmp_path / "file" / "registry")


def test_find_names_the_version_holding_a_folder(
    registry: ModelRegistry, two_versions: tuple[str, str], tmp_path: Path
) -> None:
    assert registry.find(tmp_path / "m1") == two_versions[0]
    assert registry.find(tmp_path / "m2") == two_versions[1]
    assert registry.find(fake_model(tmp_path / "m3", 3)) is None
    (tmp_path / "m1" / "ranker.txt").write_text("retrained\n")  # same folder, new content
    assert registry.find(tmp_path / "m1") is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: (m / "manifest.json").unlink(), "no manifest.json"),
        (lambda m: (m / "ranker.txt").write_text("edited"), "ranker.txt: file does not match"),
        (lambda m: (m / "ids.json").unlink(), "ids.json: file listed in the model manifest"),
        (lambda m: (m / "link").symlink_to(m / "ranker.txt"), "links and special files"),
        (lambda m: (m / "manifest.json").write_text("{"), "manifest is not valid JSON"),
    ],
    ids=["no-manifest", "altered", "partial", "symlink", "bad-json"],
)
def test_a_damaged_model_folder_is_not_added(
    registry: ModelRegistry, tmp_path: Path, damage: object, message: str
) -> None:
    source = fake_model(tmp_path / "m", 3)
    damage(source)  # type: ignore[operator]
    with pytest.raises(DataError, match=re.escape(message)):
        registry.add(source)
    assert list(registry.versions_dir.iterdir()) == []  # no version, no staging left


def test_a_failed_copy_leaves_nothing(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recsemble.registry as module

    real_copy, calls = module.copy_durably, []

    def failing_copy(source: Path, target: Path) -> str:
        calls.append(source)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_copy(source, target)

    monkeypatch.setattr(module, "copy_durably", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        registry.add(fake_model(tmp_path / "m", 4))
    assert list(registry.versions_dir.iterdir()) == []


def test_staging_left_by_a_killed_add_is_cleaned_once_stale(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    old, fresh = registry.versions_dir / ".adding-old", registry.versions_dir / ".adding-fresh"
    for folder in (old, fresh):
        (folder / "members").mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    version = registry.add(fake_model(tmp_path / "m", 1))
    assert not old.exists() and fresh.exists()  # a fresh one may be another add at work
    assert [v.version for v in registry.versions()] == [version]


def test_metadata_must_be_plain_json(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics"):
        registry.add(fake_model(tmp_path / "m", 1), metrics={"ndcg": float("nan")})
    with pytest.raises(ValueError, match="config"):
        registry.add(fake_model(tmp_path / "m", 1), config={"when": object()})
    assert registry.versions() == []


# -- publish and rollback --------------------------------------------------------------------
def test_publish_and_rollback_walk_the_history(
    registry: ModelRegistry, two_versions: tuple[str, str], tmp_path: Path
) -> None:
    first, second = two_versions
    assert registry.current() is None
    with pytest.raises(DataError, match="no previously published version"):
        registry.rollback()
    registry.publish(first)
    registry.publish(first)  # already current: not a second history entry
    registry.publish(second)
    assert registry.current() == second
    assert [h["version"] for h in registry.history()] == [first, second]
    third = registry.add(fake_model(tmp_path / "m3", 3))
    registry.publish(third)
    assert registry.rollback() == second
    assert registry.rollback() == first
    assert registry.current() == first
    with pytest.raises(DataError, match="no previously published version"):
        registry.rollback()
    assert registry.current() == first
    assert ModelRegistry(registry.root).current() == first  # it is on disk, not in memory


def test_an_unknown_version_cannot_be_published(
    registry: ModelRegistry, two_versions: tuple[str, str]
) -> None:
    registry.publish(two_versions[0])
    before = _pointer_bytes(registry)
    for name in ("20990101T000000.000000Z-0123456789ab", "../../etc", ""):
        with pytest.raises(UnknownVersionError):
            registry.publish(name)
    assert _pointer_bytes(registry) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda v: (v / "ranker.txt").write_text("tampered"), "ranker.txt: file does not match"),
        (lambda v: (v / "members/00-pop/arrays.npz").unlink(), "arrays.npz: file listed"),
        (lambda v: (v / "version.json").unlink(), "no version.json: a partial"),
        (lambda v: (v / "extra.bin").write_bytes(b"x"), "extra.bin: file is not listed"),
        (lambda v: (v / "version.json").write_text("{"), "version.json is not valid JSON"),
        (
            lambda v: (v / "version.json").write_text(
                (v / "version.json").read_text().replace('"ranker.txt": "', '"ranker.txt": "0')
            ),
            "content hash",
        ),
    ],
    ids=["altered", "missing", "no-record", "extra", "bad-record", "edited-record"],
)
def test_a_corrupt_or_partial_version_is_refused_and_the_pointer_stays(
    registry: ModelRegistry, two_versions: tuple[str, str], damage: object, message: str
) -> None:
    first, second = two_versions
    registry.publish(first)
    before = _pointer_bytes(registry)
    damage(registry.path(second))  # type: ignore[operator]
    with pytest.raises(DataError, match=re.escape(message)):
        registry.verify(second)
    with pytest.raises(DataError, match=re.escape(message)):
        registry.publish(second)
    assert registry.current() == first and _pointer_bytes(registry) == before


def test_rollback_to_a_corrupt_version_is_refused(
    registry: ModelRegistry, two_versions: tuple[str, str]
) -> None:
    first, second = two_versions
    registry.publish(first)
    registry.publish(second)
    (registry.path(first) / "ranker.txt").write_text("bit rot")
    with pytest.raises(DataError, match=r"ranker\.txt"):
        registry.rollback()
    assert registry.current() == second
    assert [v.version for v in registry.versions()] == [first, second]


def test_a_leftover_temp_pointer_is_harmless_and_a_broken_pointer_is_reported(
    registry: ModelRegistry, two_versions: tuple[str, str]
) -> None:
    registry.publish(two_versions[0])
    (registry.root / "CURRENT.tmp").write_text("half-written garbag")  # a crash mid-publish
    assert registry.current() == two_versions[0]
    registry.publish(two_versions[1])
    assert registry.current() == two_versions[1]
    (registry.root / "CURRENT").write_text('{"current": "x"')
    with pytest.raises(DataError, match="CURRENT: malformed pointer file"):
        registry.current()


# -- concurrency -----------------------------------------------------------------------------
PUBLISHES = 25


def _publish_alternately(root: str, versions: tuple[str, str]) -> None:
    registry = ModelRegistry(root)
    for n in range(PUBLISHES):
        registry.publish(versions[n % 2])


def test_two_processes_publishing_at_once_keep_a_valid_pointer(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """Each process alternates between two versions of its own, so every publish changes the
    pointer: a lost update would show as a missing history entry, a torn write as a read
    error in the watcher."""
    names = [registry.add(fake_model(tmp_path / f"m{n}", n)) for n in range(4)]
    pairs = [(names[0], names[1]), (names[2], names[3])]
    seen: set[str | None] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.add(ModelRegistry(registry.root).current())
            except BaseException as exc:
                errors.append(exc)
                return

    context = multiprocessing.get_context("fork")  # forked: no re-import of recsemble
    workers = [
        context.Process(target=_publish_alternately, args=(str(registry.root), pair))
        for pair in pairs
    ]
    for worker in workers:
        worker.start()
    watcher = threading.Thread(target=watch)  # started after the fork: no thread is copied
    watcher.start()
    for worker in workers:
        worker.join(timeout=60)
    stop.set()
    watcher.join()
    assert [w.exitcode for w in workers] == [0, 0]
    assert not errors
    assert seen <= {None, *names}
    assert registry.current() in names
    assert len(registry.history()) == 2 * PUBLISHES
    assert registry.history()[-1]["version"] == registry.current()
