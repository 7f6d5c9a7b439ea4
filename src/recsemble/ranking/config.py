"""The ensemble's typed configuration: members (model, view, candidates), ranker, options."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from recsemble.ranking.metaranker import RankerConfig
from recsemble.strict import StrictConfig


class _Frozen(StrictConfig):
    pass


class ViewConfig(_Frozen):
    """A slice of the training data one member learns from, so members can specialise."""

    window_days: float | None = Field(None, gt=0)  # only events in the last N days of the data
    events: list[str] | None = None  # only these event types

    def label(self) -> str:
        parts = []
        if self.window_days is not None:
            parts.append(f"{self.window_days:g}d")
        if self.events:
            parts.append("+".join(self.events))
        return ",".join(parts)


class MemberConfig(_Frozen):
    """One ensemble member: a generator, optionally on a view of the data."""

    model: str  # a generator name (see `recsemble evaluate --help`)
    name: str | None = None  # label in reports; default: the model name (plus the view)
    candidates: int = Field(200, ge=1, le=5000)  # top-N it proposes per user
    view: ViewConfig | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # overrides of [models.<model>]

    def settings(self, model_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Its params over [models.<model>]. A member that can count causally does, unless one
        of those says otherwise: the protocol lets nothing the ranker learns from count other
        users' interactions after a user's moment of recommendation (`pop` evaluated alone
        stays the literature's non-causal baseline)."""
        from recsemble.generators import GENERATORS

        params = {**model_params.get(self.model, {}), **self.params}
        if "causal" in GENERATORS[self.model].Config.model_fields:
            params.setdefault("causal", True)
        return params

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.model}@{self.view.label()}" if self.view else self.model


def _default_members() -> list[MemberConfig]:
    # Different kinds of signal, not several versions of one: all-time and trending popularity,
    # neighbourhoods, factors, EASE (plain and recency-weighted), content and sequence.
    models = [
        "pop",
        "pop-trending",
        "itemknn",
        "itemknn-recent",
        "userknn",
        "ials",
        "bpr",
        "ease",
        "ease-recent",
        "content",
        "covisit",
    ]
    return [MemberConfig(model=m) for m in models]


class EnsembleConfig(_Frozen):
    """The ensemble's settings: `[ensemble]` in the TOML config."""

    members: list[MemberConfig] = Field(default_factory=_default_members)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    # How the validation window is cut from the training data; "auto" follows the protocol
    # the ensemble is evaluated under (temporal-user unless told otherwise).
    validation: Literal["auto", "temporal-user", "temporal-global"] = "auto"
    # Share of each user's (or of all) events a window holds out; None: the protocol's
    # test_fraction, as the protocol asks (a bare Ensemble, told no protocol: 0.2).
    validation_fraction: float | None = Field(None, gt=0, lt=1)
    # Each further fold splits the previous fit part again: more (older) training requests.
    validation_folds: int = Field(2, ge=1, le=5)
    # Validation windows are cut from the users with at least this many interactions: a
    # model trained for serving keeps users with a single one, whom a window would leave with
    # no history at all (after the protocol's preparation every user has 4 or more).
    validation_min_interactions: int = Field(2, ge=1)
    # Validation requests per fold the ranker learns from (a random sample above this).
    max_validation_users: int | None = Field(2000, ge=10)
    # Random negatives per validation request the ranker trains on (None: all candidates).
    negatives_per_user: int | None = Field(100, ge=1)
    # Popularity is counted in each of these windows before the moment of recommendation.
    popularity_windows_days: list[float] = Field(
        default_factory=lambda: [0.25, 1.0, 3.0, 7.0, 14.0, 30.0, 90.0, 365.0]
    )
    # Serve a history slice by one member alone when, on validation (ranker scored out of
    # fold), that member beat the ranker there over at least routing_min_users requests.
    routing: bool = True
    routing_folds: int = Field(2, ge=2, le=10)
    routing_min_users: int = Field(20, ge=1)
    # ... and only when that member's paired gain over the ranker exceeds this many standard
    # errors (1.96: its 95% interval lies above 0; 0: any gain routes).
    routing_min_gain_se: float = Field(1.96, ge=0)
    prune: list[str] = Field(default_factory=list)  # member labels removed from serving
    # When answering, only candidates that some member ranks in its top `serving_top` are
    # scored by the ranker (the ranker's time is linear in candidates and the deep tail of
    # the union almost never reaches the top k); it still learns from every candidate.
    # None (in TOML: "none"): score every candidate.
    serving_top: int | None = Field(50, ge=1)
    max_block_cells: int = Field(40_000_000, ge=1_000_000)  # dense member scores held at once
    # What orders the candidates: the tree ranker, or the cheap blend of calibrated members.
    scorer: Literal["ranker", "blend"] = "ranker"
    # Map ranker scores to P(interaction) (recommend(..., probabilities=True)). Costs
    # calibration_folds extra ranker fits (about 100 s on ml-100k / ml-latest-small), so off
    # unless asked for. None: no calibrator.
    calibration: Literal["isotonic", "platt"] | None = None
    calibration_folds: int = Field(3, ge=2, le=10)
    # Diversity strength: 0 = plain top-k; > 0 trades accuracy for less redundant lists.
    diversity: float = Field(0.0, ge=0)
    diversity_similarity: Literal["category", "members", "both"] = "both"
    diversity_pool: int = Field(100, ge=1)  # best candidates per request the re-ranking sees

    @property
    def window_fraction(self) -> float:
        """validation_fraction, or the protocol's default 0.2 where no protocol filled it in."""
        return self.validation_fraction or 0.2

    @model_validator(mode="after")
    def _check_members(self) -> EnsembleConfig:
        from recsemble.generators import GENERATORS

        if not self.members:
            raise ValueError("members is empty: an ensemble needs at least one member")
        labels = [m.label for m in self.members]
        for position, member in enumerate(self.members):
            if member.model not in GENERATORS:
                raise ValueError(
                    f"unknown member model {member.model!r}; choose from {sorted(GENERATORS)}"
                )
            _check_params(position, member, GENERATORS[member.model].Config)
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"member labels must be unique, repeated: {dupes} (set `name`)")
        unknown = sorted(set(self.prune) - set(labels))
        if unknown:
            raise ValueError(f"prune names unknown members {unknown}; members are {labels}")
        if len(set(self.prune)) >= len(labels):
            raise ValueError("prune would remove every member")
        return self


def _check_params(position: int, member: MemberConfig, config: type[BaseModel]) -> None:
    """A member's params against its model's config, the member and the key named."""
    try:
        config.model_validate(member.params)
    except ValidationError as exc:
        fields = list(config.model_fields)
        problems = []
        for err in exc.errors():
            key = ".".join(map(str, err["loc"]))
            hint = ""
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {fields})"
            problems.append(f"{key}: {str(err['msg']).removeprefix('Value error, ')}{hint}")
        raise ValueError(
            f"members[{position}] ({member.model}) params: {'; '.join(problems)}"
        ) from None
