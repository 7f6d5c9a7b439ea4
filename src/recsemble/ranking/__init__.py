"""Ranking: the candidate union, causal features, the meta-ranker and the Ensemble built on them."""

from __future__ import annotations

from recsemble.ranking.config import EnsembleConfig, MemberConfig, ViewConfig
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.metaranker import MetaRanker, RankerConfig

__all__ = ["Ensemble", "EnsembleConfig", "MemberConfig", "MetaRanker", "RankerConfig", "ViewConfig"]
