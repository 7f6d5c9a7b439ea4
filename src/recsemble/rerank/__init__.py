"""The re-ranking stage: filters, score transforms, diversity, calibration, fairness, exploration.

Each stage is a `Reranker` ((query, ItemList) -> ItemList, never adding an item); `Reranked`
runs a model and then a chain of stages; `[rerank]` in the config holds every stage's settings.
"""

from recsemble.rerank.base import Query, Reranker, RerankerConfig
from recsemble.rerank.config import RERANKERS, RerankConfig, build_stages
from recsemble.rerank.reranked import Reranked

__all__ = [
    "RERANKERS",
    "Query",
    "RerankConfig",
    "Reranked",
    "Reranker",
    "RerankerConfig",
    "build_stages",
]
