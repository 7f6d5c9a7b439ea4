"""The API serves a user's precomputed batch list first while it is still the answer, and
falls back to on-line scoring when the user's history changed, when k or the options differ,
and when a bad file failed to load (the previous lists keep serving)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.evaluation.workflow import load_prepared
from recsemble.generators import GENERATORS
from recsemble.pipeline import RequestOptions
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import save_model
from recsemble.serving.app import create_app
from recsemble.serving.state import ServeSettings
from recsemble.spark.batch import score_locally, write_table

K = 10


@pytest.fixture(scope="module")
def lists_dir(model_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch lists of the served model for every user of its training data."""
    data = model_dirs[0].parent / "data"
    config = RecsembleConfig.model_validate({"data": {"dataset": str(data)}})
    frame = load_prepared(config).external_interactions()
    table = score_locally(frame, model_dirs[0], k=K)
    return write_table(table, tmp_path_factory.mktemp("lists") / "lists")


@pytest.fixture(scope="module")
def served(
    model_dirs: tuple[Path, Path], lists_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str, str]]:
    tmp = tmp_path_factory.mktemp("precomputed")
    store_url = f"sqlite:///{tmp / 'store.db'}"
    settings = ServeSettings(store_url=store_url, registry_dir=tmp / "reg", model_dir=model_dirs[0])
    with TestClient(create_app(settings)) as client:
        version = client.app.state.serving.recommender.version  # type: ignore[attr-defined]
        assert _load(lists_dir, version, store_url).exit_code == 0
        yield client, version, store_url


def _load(path: Path, version: str, store_url: str) -> Any:
    return CliRunner().invoke(
        app,
        ["load-recs", "--input", str(path), "--model-version", version, "--store", store_url],
    )


def _users(lists_dir: Path) -> list[str]:
    return sorted(set(pq.read_table(lists_dir).column("user").to_pylist()))


def _cached(lists_dir: Path, user: str) -> list[str]:
    rows = pq.read_table(lists_dir).to_pylist()
    return [r["item"] for r in sorted(rows, key=lambda r: r["rank"]) if r["user"] == user]


def test_unchanged_user_gets_the_precomputed_list(
    served: tuple[TestClient, str, str], lists_dir: Path
) -> None:
    client, _, _ = served
    recommender = client.app.state.serving.recommender  # type: ignore[attr-defined]
    hits_before = client.get("/stats").json()["precomputed_hits"]
    for user in _users(lists_dir)[:5]:
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert body["served_from"] == "precomputed"
        assert [i["item_id"] for i in body["items"]] == _cached(lists_dir, user)
        online = recommender.recommend(user, RequestOptions(k=K))  # what it would compute
        assert [i["item_id"] for i in body["items"]] == [r.item_id for r in online.items]
        shorter = client.get(f"/users/{user}/recommendations", params={"k": 3}).json()
        assert shorter["served_from"] == "precomputed" and len(shorter["items"]) == 3
    explained = client.get(f"/users/{user}/recommendations", params={"explain": "true"}).json()
    assert explained["served_from"] == "precomputed"
    assert explained["items"][0]["explanation"]["text"]
    assert client.get("/stats").json()["precomputed_hits"] == hits_before + 11  # 5 x 2 + 1


def test_other_requests_are_answered_online(
    served: tuple[TestClient, str, str], lists_dir: Path
) -> None:
    client, _, _ = served
    user = _users(lists_dir)[1]
    first = _cached(lists_dir, user)[0]
    for params in ({"k": K + 1}, {"k": K, "exclude": first}, {"k": K, "rerank": "seen"}):
        body = client.get(f"/users/{user}/recommendations", params=params).json()
        assert body["served_from"] == "online", params
    unknown = client.get("/users/never-seen/recommendations").json()
    assert unknown["served_from"] == "online"


def test_a_new_event_makes_the_user_online(
    served: tuple[TestClient, str, str], lists_dir: Path
) -> None:
    client, _, _ = served
    user, other = _users(lists_dir)[2], _users(lists_dir)[3]
    item = _cached(lists_dir, user)[0]
    event = {"event_id": "precomputed-e1", "user_id": user, "item_id": item}
    assert client.post("/events", json={"events": [event]}).status_code == 200
    body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
    assert body["served_from"] == "online"
    assert item not in [i["item_id"] for i in body["items"]]  # seen now
    still = client.get(f"/users/{other}/recommendations", params={"k": K}).json()
    assert still["served_from"] == "precomputed"


def test_bad_files_are_refused_and_the_lists_stay(
    served: tuple[TestClient, str, str], lists_dir: Path, tmp_path: Path
) -> None:
    client, version, store_url = served
    table = pq.read_table(lists_dir)
    pq.write_table(table.drop(["item"]), tmp_path / "missing.parquet")
    pq.write_table(table.set_column(3, "score", table.column("user")), tmp_path / "typed.parquet")
    for name, message in (("missing", "item"), ("typed", "'score' must hold numbers")):
        result = _load(tmp_path / f"{name}.parquet", version, store_url)
        assert result.exit_code != 0 and message in result.output, result.output
    user = _users(lists_dir)[4]
    body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
    assert body["served_from"] == "precomputed"


def test_an_item_added_since_the_batch_takes_the_slot_it_has_online(
    served: tuple[TestClient, str, str], lists_dir: Path
) -> None:
    client, _, _ = served
    recommender = client.app.state.serving.recommender  # type: ignore[attr-defined]
    user = _users(lists_dir)[4]
    cached = _cached(lists_dir, user)
    like = recommender.items.titles[recommender.items.idx(cached[0])]  # in the user's taste
    assert client.put("/items/added-later", json={"title": like}).status_code == 200
    online = [r.item_id for r in recommender.recommend(user, RequestOptions(k=K)).items]
    assert online == [*cached[:-1], "added-later"]
    body = client.get(f"/users/{user}/recommendations", params={"k": K, "explain": "true"}).json()
    assert body["served_from"] == "precomputed"
    assert [i["item_id"] for i in body["items"]] == online
    assert body["items"][-1]["explanation"]["text"].startswith("New item")
    assert body["items"][0]["explanation"]["members"]  # the cached explanations stay
    assert client.delete("/items/added-later").status_code == 200


def test_lists_are_loaded_only_as_the_version_of_the_model_that_computed_them(
    tmp_path: Path,
) -> None:
    """load-recs filed any lists under any --model-version: another model's lists were served
    as this version's answers (same history marker), and a mistyped name loaded lists that no
    version would ever serve, with a success message for both."""
    from recsemble.registry import ModelRegistry
    from recsemble.store import open_store

    data = tmp_path / "d.csv"
    rows = [f"u{u},i{(u * 3 + n) % 15},{1_700_000_000 + n}" for u in range(6) for n in range(6)]
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    registry = ModelRegistry(tmp_path / "registry")
    versions = {}
    for name in ("pop", "itemknn"):
        trained = CliRunner().invoke(app, ["train", "--dataset", str(data), "--model", name,
                                           "--out", str(tmp_path / name)])  # fmt: skip
        assert trained.exit_code == 0, trained.output
        versions[name] = registry.add(tmp_path / name)
    lists = tmp_path / "lists"
    batched = CliRunner().invoke(app, ["batch", "--model", str(tmp_path / "pop"), "--output",
                                       str(lists), "--dataset", str(data)])  # fmt: skip
    assert batched.exit_code == 0, batched.output
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    for wrong, said in ((versions["itemknn"], "computed by the model in"),
                        ("v2", "is not a registry version name")):  # fmt: skip
        result = _load(lists, wrong, store_url)
        assert result.exit_code != 0 and said in " ".join(result.output.split()), result.output
    assert _load(lists, versions["pop"], store_url).exit_code == 0
    from_registry = tmp_path / "lists-of-the-version"  # its folder holds version.json too
    folder = str(registry.path(versions["pop"]))
    batched = CliRunner().invoke(app, ["batch", "--model", folder, "--output",
                                       str(from_registry), "--dataset", str(data)])  # fmt: skip
    assert batched.exit_code == 0, batched.output
    assert _load(from_registry, versions["pop"], store_url).exit_code == 0
    store = open_store(store_url)
    try:
        assert store.precomputed_info(versions["itemknn"]) is None
        info = store.precomputed_info(versions["pop"])
        assert info is not None and info.users == 6
    finally:
        store.close()


def test_lists_the_served_stages_did_not_make_or_would_judge_otherwise_are_online(
    model_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A batch re-ranked otherwise than the server re-ranks is not served. With stages reading
    item attributes (here expiry), a cached list holding an item PUT since the batch is
    answered on line too: the PUT (an expiry in the past) may rule it out."""
    data = model_dirs[0].parent / "data"
    config = RecsembleConfig.model_validate(
        {"data": {"dataset": str(data)}, "rerank": {"stages": ["available"]}}
    )
    frame = load_prepared(config).external_interactions()
    lists_dir = write_table(score_locally(frame, model_dirs[0], k=K, config=config), tmp_path / "l")
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServeSettings(
        store_url=store_url, registry_dir=tmp_path / "reg", model_dir=model_dirs[0], config=config
    )
    plain = score_locally(frame, model_dirs[0], k=K)  # without the server's stages
    plain_dir = write_table(plain, tmp_path / "plain")
    with TestClient(create_app(settings)) as client:
        version = client.app.state.serving.recommender.version  # type: ignore[attr-defined]
        user, other = _users(lists_dir)[0], _users(lists_dir)[1]
        assert _load(plain_dir, version, store_url).exit_code == 0
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert body["served_from"] == "online"  # not re-ranked as the server re-ranks
        assert _load(lists_dir, version, store_url).exit_code == 0
        expired = next(i for i in _cached(lists_dir, user) if i not in _cached(lists_dir, other))
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert body["served_from"] == "precomputed"
        put = {"title": "gone soon", "attributes": {"expires_at": 1_000_000_000}}
        assert client.put(f"/items/{expired}", json=put).status_code == 200
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert body["served_from"] == "online"
        assert expired not in [i["item_id"] for i in body["items"]]
        still = client.get(f"/users/{other}/recommendations", params={"k": K}).json()
        assert still["served_from"] == "precomputed"  # its items were not PUT


def test_an_item_expired_since_the_batch_is_not_served_from_it(
    model_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The batch judged expiry at its own moment; an item of the catalog that expired since
    (no PUT: its expires_at came with the training data) is no longer in the answer."""
    data = load_prepared(
        RecsembleConfig.model_validate({"data": {"dataset": str(model_dirs[0].parent / "data")}})
    )
    knn = GENERATORS["itemknn"]().fit(data)
    top = int(knn.recommend([0], 1).items[0][0])
    now = int(time.time())
    expires = [now - 1_000 if i == top else None for i in range(data.n_items)]
    attributes = data.item_attributes.with_columns(expires_at=pl.Series(expires, dtype=pl.Int64))
    catalog = Dataset(users=data.users, items=data.items, interactions=data.interactions,
                      item_attributes=attributes, user_attributes=data.user_attributes,
                      event_weights=data.event_weights)  # fmt: skip
    model = save_model(knn, tmp_path / "knn", Catalog.from_dataset(catalog))
    config = RecsembleConfig.model_validate({"rerank": {"stages": ["available"]}})
    frame = data.external_interactions()
    lists = score_locally(frame, model, k=K, at=now - 100_000, config=config)  # before expiry
    lists_dir = write_table(lists, tmp_path / "lists")
    user, item = data.users.id_of(0), data.items.id_of(top)
    assert item in _cached(lists_dir, user)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServeSettings(
        store_url=store_url, registry_dir=tmp_path / "reg", model_dir=model, config=config
    )
    with TestClient(create_app(settings)) as client:
        version = client.app.state.serving.recommender.version  # type: ignore[attr-defined]
        assert _load(lists_dir, version, store_url).exit_code == 0
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert body["served_from"] == "online"
        assert item not in [i["item_id"] for i in body["items"]]
