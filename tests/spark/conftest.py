"""Spark in local mode for the tests of recsemble.spark: one session for the whole run.

Without PySpark (the `spark` extra) or Java the tests skip with the reason, except in CI (env CI
set), where they fail: `make test` installs the extra and Java 17 is on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import EVENT_WEIGHTS, SyntheticConfig, generate
from recsemble.errors import ConfigError


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Spark tests: `make test` installs the extra)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from recsemble.spark.session import require_pyspark, spark_session

    try:
        require_pyspark()
    except ConfigError as exc:
        _missing(str(exc))
    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    """A small synthetic log: duplicate (user, item) pairs, funnel events, categories."""
    config = SyntheticConfig(n_users=600, n_items=200, n_interactions=20_000, seed=7)
    interactions, items, users = generate(config)
    return Dataset.from_frames(interactions, items, users, event_weights=EVENT_WEIGHTS)


def external(dataset: Dataset) -> pl.DataFrame:
    """A dataset's interactions with external ids, the form compared row for row."""
    return dataset.external_interactions()


_LOAD_WITHOUT_SPARK = """
import json, sys
sys.modules["pyspark"] = None  # any import of pyspark now fails
from recsemble.ranking.persistence import load_model
loaded = load_model(sys.argv[1])
top = loaded.model.recommend(list(range(20)), 10)
print(json.dumps({"items": top.items.tolist(), "spark": "pyspark.sql" in sys.modules}))
"""


def lists_without_spark(folder: Path) -> list[list[int]]:
    """The top-10 of users idx 0..19 from a saved model loaded (as the server loads it) by a
    Python process in which pyspark cannot be imported."""
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_SPARK, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["spark"] is False
    items: list[list[int]] = answer["items"]
    return items
