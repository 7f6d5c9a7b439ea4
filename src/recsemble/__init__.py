"""recsemble: a recommender engine built around a measured ensemble of complementary models.

The core types live here; everything else is in the subpackage that matches its stage
(data -> generators -> ranking; evaluation beside them).
"""

import os

# OpenMP threads (LightGBM, implicit) that spin while waiting made the meta-ranker's training
# 5-10x slower whenever the machine had other work; passive waiting costs little when it has
# not. Set before any OpenMP runtime starts; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from recsemble.data.dataset import Dataset
from recsemble.data.idmap import IdMap
from recsemble.generators.base import CandidateGenerator
from recsemble.ranking import Ensemble, EnsembleConfig
from recsemble.types import ItemList, TopK

__version__ = "0.1.0"

__all__ = [
    "CandidateGenerator",
    "Dataset",
    "Ensemble",
    "EnsembleConfig",
    "IdMap",
    "ItemList",
    "TopK",
    "__version__",
]
