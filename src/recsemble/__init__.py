"""recsemble: a recommender engine built around a measured ensemble of complementary models.

The core types live here; everything else is in the subpackage that matches its stage
(data -> generators -> evaluation).
"""

from recsemble.data.dataset import Dataset
from recsemble.data.idmap import IdMap
from recsemble.generators.base import CandidateGenerator
from recsemble.types import ItemList, TopK

__version__ = "0.1.0"

__all__ = ["CandidateGenerator", "Dataset", "IdMap", "ItemList", "TopK", "__version__"]
