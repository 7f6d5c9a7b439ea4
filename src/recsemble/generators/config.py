"""Config base classes shared by the generators (one typed, frozen config per generator)."""

from __future__ import annotations

from pydantic import Field

from recsemble.strict import StrictConfig


class GeneratorConfig(StrictConfig):
    """Base of every generator's config: frozen, unknown keys rejected, "none" = None."""


class RecencyConfig(GeneratorConfig):
    """Recency weighting of a user's profile, shared by every history-based member.

    Each event's weight is multiplied by 2^(-age / half-life): age in events (distinct later
    timestamps) and/or in days before the moment of recommendation. None = no decay.
    """

    half_life_events: float | None = Field(None, gt=0)
    half_life_days: float | None = Field(None, gt=0)
    binary: bool = False  # True: each (user, item) counts 1 instead of its summed event weights
