"""What every peer script shares: read the split, time the phases, write top-k lists.

Runs inside each peer's own virtualenv, so it needs only the standard library, numpy and scipy
(pandas only where a peer asks for a frame) and never imports recsemble. A peer script is called as

    <venv>/bin/python benchmarks/peers/run_<peer>.py --split DIR --model NAME --out recs.csv

reads DIR/train.csv and DIR/test.csv (user,item,timestamp; external ids, written by
bench_generators.py), recommends the top k for every user in test.csv over the whole catalog
minus the user's train items, writes recs.csv (user,item,rank from 1) and prints one line
`RESULT {json}` with fit_s, recommend_s, the library version and the parameters used.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass
class PeerSplit:
    """The split in the integer codes a peer library wants.

    Items are coded over the whole catalog (train and test items, sorted by id); users over the
    train users (every evaluated user has train interactions under temporal-user).
    """

    u: np.ndarray  # train rows: user code, item code, timestamp
    i: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray  # code -> external id
    item_ids: np.ndarray
    eval_users: np.ndarray  # codes of the users in test.csv, ascending

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self) -> sp.csr_matrix:
        """Binary users x items train matrix (float32)."""
        data = np.ones(self.u.size, dtype=np.float32)
        return sp.csr_matrix((data, (self.u, self.i)), shape=(self.n_users, self.n_items))

    def train_frame(self) -> Any:
        """Train rows as a pandas frame: user, item (external ids), timestamp, u, i."""
        import pandas as pd  # only the peers whose venv has it ask for a frame

        return pd.DataFrame(
            {
                "user": self.user_ids[self.u],
                "item": self.item_ids[self.i],
                "timestamp": self.timestamp,
                "u": self.u,
                "i": self.i,
            }
        )


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """user, item (str arrays), timestamp (int64) of a user,item,timestamp CSV."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:3] != ["user", "item", "timestamp"]:
            raise SystemExit(f"{path}: expected columns user,item,timestamp, got {header}")
        rows = list(reader)
    users = np.array([r[0] for r in rows], dtype=object)
    items = np.array([r[1] for r in rows], dtype=object)
    return users, items, np.array([int(r[2]) for r in rows], dtype=np.int64)


def read_split(folder: Path) -> PeerSplit:
    users, items, timestamp = _read_csv(folder / "train.csv")
    test_users_raw, test_items, _ = _read_csv(folder / "test.csv")
    user_ids = np.unique(users)
    item_ids = np.unique(np.concatenate([items, test_items]))
    u = np.searchsorted(user_ids, users).astype(np.int32)
    i = np.searchsorted(item_ids, items).astype(np.int32)
    test_users = np.unique(test_users_raw)
    missing = np.setdiff1d(test_users, user_ids)
    if missing.size:
        raise SystemExit(f"{missing.size} test users have no train rows; this script needs them")
    eval_users = np.searchsorted(user_ids, test_users).astype(np.int32)
    return PeerSplit(u, i, timestamp, user_ids, item_ids, eval_users)


def write_recs(path: Path, users: np.ndarray, items: np.ndarray) -> None:
    """users: external ids (n,); items: external ids (n, k), None where a list is short."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user", "item", "rank"])
        for user, row in zip(users, items, strict=True):
            writer.writerows((user, item, rank) for rank, item in enumerate(row, 1) if item)


def codes_to_ids(split: PeerSplit, codes: np.ndarray) -> np.ndarray:
    """Item codes (n, k), -1 = no item, to external ids (object array, None for -1)."""
    out = np.full(codes.shape, None, dtype=object)
    valid = codes >= 0
    out[valid] = split.item_ids[codes[valid]]
    return out


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start


def parse_args(models: list[str], takes_params: bool = False) -> argparse.Namespace:
    """The command line every peer script shares; --params only where the script reads it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", choices=models, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--params", type=json.loads, default={}, help="JSON object: the model's parameters"
    )
    args = parser.parse_args()
    if not isinstance(args.params, dict):
        parser.error(f"--params takes a JSON object, got {args.params!r}")
    if args.params and not takes_params:
        parser.error("this peer script runs its own fixed parameters: --params is not read")
    return args


def emit(timer: Timer, version: str, params: dict[str, Any], **extra: Any) -> None:
    result = {
        "fit_s": timer.seconds.get("fit"),
        "recommend_s": timer.seconds.get("recommend"),
        "version": version,
        "params": params,
        **extra,
    }
    print("RESULT " + json.dumps(result), flush=True)
