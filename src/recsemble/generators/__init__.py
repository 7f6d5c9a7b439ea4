"""Candidate generators: one module per family, all behind CandidateGenerator.

The registry maps each CLI / config name to "module:Class" and imports lazily, so heavy
libraries (implicit, torch, scikit-learn) load only when their member is used.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping

from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig

_REGISTRY: dict[str, str] = {
    "pop": "recsemble.generators.popularity:Popularity",
    "pop-trending": "recsemble.generators.popularity:TrendingPopularity",
    "pop-rating": "recsemble.generators.popularity:RatingPopularity",
    "pop-segment": "recsemble.generators.popularity:SegmentPopularity",
    "itemknn": "recsemble.generators.knn:ItemKNN",
    "itemknn-recent": "recsemble.generators.knn:ItemKNNRecent",
    "userknn": "recsemble.generators.knn:UserKNN",
    "ials": "recsemble.generators.mf:IALS",
    "bpr": "recsemble.generators.mf:BPR",
    "ease": "recsemble.generators.ease:EASE",
    "ease-recent": "recsemble.generators.ease:EASERecent",
    "content": "recsemble.generators.content:Content",
    "covisit": "recsemble.generators.covisit:CoVisitation",
    "sasrec": "recsemble.generators.sasrec:SASRec",
    "twotower": "recsemble.generators.twotower:TwoTower",
}


class _Registry(Mapping[str, type[CandidateGenerator]]):
    def __getitem__(self, name: str) -> type[CandidateGenerator]:
        if name not in _REGISTRY:  # a KeyError (a Mapping's), naming what there is
            close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown generator {name!r}{hint} (known: {', '.join(_REGISTRY)})")
        module_name, _, class_name = _REGISTRY[name].partition(":")
        cls: type[CandidateGenerator] = getattr(importlib.import_module(module_name), class_name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)


#: Every generator by its config / CLI name.
GENERATORS: Mapping[str, type[CandidateGenerator]] = _Registry()

__all__ = ["GENERATORS", "CandidateGenerator", "GeneratorConfig"]
