"""implicit 0.7 (ALS, BPR, item-item cosine / TF-IDF / BM25) on the benchmark split; see peer_io.py.

Runs with recsemble's own .venv (implicit is one of its dependencies). One BLAS thread, as
implicit asks; it parallelises with its own OpenMP threads (all cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS

import implicit
import numpy as np
import peer_io
from threadpoolctl import threadpool_limits

# Library defaults (ALS: regularization 0.01, alpha 1, 15 iterations; BPR: learning rate 0.01,
# regularization 0.01, 100 iterations), except: 64 factors, the size recsemble's ials and bpr
# and the reference figures use; cosine K=100 (the library's default K=20 is a speed setting;
# 100 is the usual item-kNN reference and recsemble's default). --params goes on top of them
# (bench_generators.py's "matched" rows: the parameters of recsemble's tuned config, every one
# of these keys included; --peer-variant rows).
PARAMS = {
    "als": {"factors": 64},
    "bpr": {"factors": 64},
    "cosine": {"K": 100},
    "tfidf": {"K": 100},
    "bm25": {"K": 100},
}


def _model(name: str, params: dict[str, object]) -> object:
    if name == "als":
        from implicit.als import AlternatingLeastSquares

        return AlternatingLeastSquares(**params, random_state=0, use_gpu=False)
    if name == "bpr":
        from implicit.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(**params, random_state=0, use_gpu=False)
    from implicit import nearest_neighbours as nn

    kinds = {
        "cosine": nn.CosineRecommender,
        "tfidf": nn.TFIDFRecommender,
        "bm25": nn.BM25Recommender,
    }
    return kinds[name](**params)


def main() -> None:
    args = peer_io.parse_args(list(PARAMS), takes_params=True)
    params = PARAMS[args.model] | args.params
    split = peer_io.read_split(args.split)
    matrix = split.matrix()
    timer = peer_io.Timer()
    with threadpool_limits(1, "blas"):
        model = _model(args.model, params)
        with timer.phase("fit"):
            model.fit(matrix, show_progress=False)  # type: ignore[attr-defined]
        with timer.phase("recommend"):
            users = split.eval_users
            codes, _ = model.recommend(  # type: ignore[attr-defined]
                users, matrix[users], N=args.k, filter_already_liked_items=True
            )
    codes = np.asarray(codes, dtype=np.int64)
    peer_io.write_recs(args.out, split.user_ids[users], peer_io.codes_to_ids(split, codes))
    peer_io.emit(timer, implicit.__version__, params)


if __name__ == "__main__":
    main()
