"""Candidate generators: one module per family, all behind CandidateGenerator."""

from recsemble.generators.base import CandidateGenerator, GeneratorConfig
from recsemble.generators.popularity import POPULARITY_MODELS

#: Every generator by its config / CLI name.
GENERATORS: dict[str, type[CandidateGenerator]] = {**POPULARITY_MODELS}

__all__ = ["GENERATORS", "CandidateGenerator", "GeneratorConfig"]
