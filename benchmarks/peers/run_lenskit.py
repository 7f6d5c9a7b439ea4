"""LensKit 2025.x on the benchmark split (out/peers/lenskit-venv); see peer_io.py.

Every model runs in LensKit's standard top-N pipeline (`topn_pipeline`), whose candidate
selector leaves out the user's training items; recommend-all is `lenskit.batch.recommend` over
the evaluated users in one process (n_jobs=1): LensKit's default worker pool took 4x longer on
these data sizes (ml-100k popularity: 29.5 s vs 7.3 s).
"""

from __future__ import annotations

from typing import Any

import lenskit
import numpy as np
import peer_io
from lenskit.batch import recommend
from lenskit.data import from_interactions_df
from lenskit.pipeline import topn_pipeline
from lenskit.random import init_global_rng

# Set where the library's default does not fit binary implicit feedback or where recsemble's
# default has the same knob (neighbours, factors, EASE lambda), so times compare like with like.
PARAMS: dict[str, dict[str, Any]] = {
    "pop": {},
    "itemknn": {"max_nbrs": 100, "feedback": "implicit"},
    "userknn": {"max_nbrs": 50, "feedback": "implicit"},
    "als": {"embedding_size": 64},
    "bpr": {"preset": "bpr", "embedding_size": 64},
    "ease": {"regularization": 300.0},
}


def _scorer(name: str) -> Any:
    params = PARAMS[name]
    if name == "pop":
        from lenskit.basic import PopScorer

        return PopScorer(**params)
    if name == "itemknn":
        from lenskit.knn import ItemKNNScorer

        return ItemKNNScorer(**params)
    if name == "userknn":
        from lenskit.knn import UserKNNScorer

        return UserKNNScorer(**params)
    if name == "als":
        from lenskit.als import ImplicitMFScorer

        return ImplicitMFScorer(**params)
    if name == "bpr":
        from lenskit.flexmf import FlexMFImplicitScorer

        return FlexMFImplicitScorer(**params)
    from lenskit.knn import EASEScorer

    return EASEScorer(**params)


def main() -> None:
    args = peer_io.parse_args(list(PARAMS))
    split = peer_io.read_split(args.split)
    frame = split.train_frame()[["user", "item", "timestamp"]]
    data = from_interactions_df(frame, user_col="user", item_col="item", timestamp_col="timestamp")
    init_global_rng(0)  # ALS and BPR start from random embeddings
    pipeline = topn_pipeline(_scorer(args.model), n=args.k)
    timer = peer_io.Timer()
    with timer.phase("fit"):
        pipeline.train(data)
    users = split.user_ids[split.eval_users]
    with timer.phase("recommend"):
        recs = recommend(pipeline, list(users), n=args.k, n_jobs=1)
    out = recs.to_df()
    items = np.full((users.size, args.k), None, dtype=object)
    row = np.searchsorted(users, out["user_id"].astype(str).to_numpy())
    items[row, out["rank"].to_numpy() - 1] = out["item_id"].astype(str).to_numpy()
    peer_io.write_recs(args.out, users, items)
    peer_io.emit(timer, lenskit.__version__, PARAMS[args.model])


if __name__ == "__main__":
    main()
