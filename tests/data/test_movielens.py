"""MovieLens: the real files in ../shared/datasets, folder resolution and offline downloads."""

from __future__ import annotations

import hashlib
import io
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO
from urllib.error import URLError

import numpy as np
import pytest

from recsemble.data import movielens
from recsemble.data.loaders import load_dataset
from recsemble.data.movielens import BASE_URL, ensure_release, find_release, load_movielens
from recsemble.errors import DatasetNotFoundError

# The shared folder beside the repository root (MovieLens may not be redistributed in the repo).
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


def shared(name: str) -> Path:
    if not (SHARED / name).is_dir():
        pytest.skip(f"MovieLens {name} not found under {SHARED.resolve()}")
    return SHARED


def offline(url: str) -> BinaryIO:
    raise URLError("no network in tests")


# ---------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_ml_100k() -> None:
    ds = load_movielens("ml-100k", shared("ml-100k"), download=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert set(ds.interactions["event"].unique()) == {"rating"}
    assert ds.interactions["value"].min() == 1 and ds.interactions["value"].max() == 5
    toy = ds.item_attributes.row(ds.items.idx_of("1"), named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert toy["created_at"] == 788918400  # 01-Jan-1995
    user = ds.user_attributes.row(ds.users.idx_of("1"), named=True)
    assert user == {"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}
    # u.item is latin-1: accented titles decode.
    assert ds.item_attributes["title"].str.contains("é").any()


@pytest.mark.realdata
def test_ml_100k_from_its_own_folder_and_by_path() -> None:
    folder = shared("ml-100k") / "ml-100k"
    by_dir = load_dataset("ml-100k", data_dir=folder)
    by_path = load_dataset(folder)
    assert by_dir.n_interactions == by_path.n_interactions == 100_000
    assert by_path.name == "ml-100k"


@pytest.mark.realdata
def test_ml_latest_small() -> None:
    ds = load_dataset("ml-latest-small", data_dir=shared("ml-latest-small"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9742, 100_836)
    rated = np.unique(ds.column("item_idx")).size
    assert rated == 9724  # unrated movies stay in the catalogue
    toy = ds.item_attributes.row(ds.items.idx_of("1"), named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["categories"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert "pixar" in toy["text"]
    cats = ds.item_attributes["categories"]
    assert not cats.list.contains("(no genres listed)").any()
    assert (cats.list.len() == 0).any()
    assert ds.interactions["value"].min() == 0.5


# ---------------------------------------------------------------------------- folders
def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECSEMBLE_DATA", str(tmp_path))
    assert movielens.default_data_dir() == tmp_path
    monkeypatch.delenv("RECSEMBLE_DATA")
    assert movielens.default_data_dir() == Path.home() / ".cache" / "recsemble" / "data"


def make_ml1m(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n2::20::3::978302109\n")
    (folder / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n30::Z (1969)::Drama\n".encode(
            "latin-1"
        )
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::07030\n")


def test_ml_1m_layout_via_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_ml1m(tmp_path / "ml-1m")
    monkeypatch.setenv("RECSEMBLE_DATA", str(tmp_path))
    ds = load_dataset("ml-1m")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 2)
    amelie = ds.item_attributes.row(ds.items.idx_of("10"), named=True)
    assert amelie["title"] == "Amélie (2001)" and amelie["categories"] == ["Comedy", "Romance"]
    users = ds.user_attributes
    assert users["occupation"].to_list() == ["K-12 student", "self-employed"]
    assert users["zip"].to_list() == ["48067", "07030"] and users["age"].to_list() == [1, 56]


def test_release_folder_is_not_mistaken_for_another(tmp_path: Path) -> None:
    folder = tmp_path / "ml-20m"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3,4\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n2,X,Drama\n")
    assert find_release("ml-20m", folder) == folder
    assert find_release("ml-25m", folder) is None


# ---------------------------------------------------------------------------- downloads
def test_offline_error_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as exc:
        load_movielens("ml-100k", tmp_path, opener=offline)
    message = str(exc.value)
    assert str(tmp_path / "ml-100k" / "u.data") in message
    assert f"{BASE_URL}/ml-100k.zip" in message
    assert "no network in tests" in message
    assert "--data-dir" in message and "RECSEMBLE_DATA" in message


def test_offline_sidecar(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"ratings\.csv.*ml-latest-small\.zip"):
        ensure_release("ml-latest-small", tmp_path, opener=offline)


def test_download_off(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="switched off"):
        ensure_release("ml-25m", tmp_path, download=False)


def test_unknown_release(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="unknown MovieLens release"):
        ensure_release("ml-5m", tmp_path)


SMALL_FILES = {
    "ratings.csv": "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n2,2,2.5,964982224\r\n",
    "movies.csv": (
        "movieId,title,genres\r\n1,Toy Story (1995),Animation|Comedy\r\n"
        '2,"Heat, the (1995)",(no genres listed)\r\n3,Unrated (2000),Drama\r\n'
    ),
    "tags.csv": "userId,movieId,tag,timestamp\r\n1,1,pixar,1\r\n2,1,fun,2\r\n2,1,pixar,3\r\n",
    "links.csv": "movieId,imdbId,tmdbId\r\n1,1,1\r\n",
}


def serve(folder: Path, name: str, files: dict[str, str], md5: str | None = None) -> Path:
    """A local copy of GroupLens's layout: <name>.zip and its <name>.zip.md5 sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for filename, text in files.items():
            archive.writestr(f"{name}/{filename}", text)
    data = buffer.getvalue()
    (folder / f"{name}.zip").write_bytes(data)
    digest = md5 or hashlib.md5(data).hexdigest()
    (folder / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {digest}\n")
    return folder


def file_opener(served: Path) -> movielens.Opener:
    def opener(url: str) -> BinaryIO:
        response: BinaryIO = urllib.request.urlopen(url.replace(BASE_URL, served.as_uri()))
        return response

    return opener


def test_download_checks_sidecar_and_extracts(tmp_path: Path) -> None:
    served = serve(tmp_path / "server", "ml-latest-small", SMALL_FILES)
    data_dir = tmp_path / "data"
    ds = load_movielens("ml-latest-small", data_dir, opener=file_opener(served))
    folder = data_dir / "ml-latest-small"
    assert sorted(p.name for p in folder.iterdir()) == ["movies.csv", "ratings.csv", "tags.csv"]
    assert not list(data_dir.glob("*.zip*"))  # the archive is removed after extraction
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 2)
    attrs = ds.item_attributes
    assert attrs["text"].to_list() == ["pixar, fun", None, None]
    assert attrs["categories"].to_list() == [["Animation", "Comedy"], [], ["Drama"]]
    assert attrs["title"][1] == "Heat, the (1995)"
    # Second call: files are found, nothing is fetched.
    assert load_movielens("ml-latest-small", data_dir, opener=offline).n_interactions == 2


def test_sidecar_mismatch_deletes_download(tmp_path: Path) -> None:
    served = serve(tmp_path / "server", "ml-latest-small", SMALL_FILES, md5="0" * 32)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="failed its checksum"):
        ensure_release("ml-latest-small", data_dir, opener=file_opener(served))
    assert list(data_dir.iterdir()) == []


def test_pinned_checksum_mismatch(tmp_path: Path) -> None:
    files = {"u.data": "1\t1\t5\t1\n", "u.item": "", "u.user": "", "u.genre": ""}
    served = serve(tmp_path / "server", "ml-100k", files)
    with pytest.raises(DatasetNotFoundError, match=movielens.PINNED_MD5["ml-100k"]):
        ensure_release("ml-100k", tmp_path / "data", opener=file_opener(served))
    assert list((tmp_path / "data").iterdir()) == []
