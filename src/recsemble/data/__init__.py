"""Ingest and hold data: IdMap, Dataset, loaders (files, MovieLens, synthetic)."""

from recsemble.data.dataset import Dataset
from recsemble.data.idmap import IdMap
from recsemble.data.loaders import load_dataset

__all__ = ["Dataset", "IdMap", "load_dataset"]
