"""The [rerank] section: one typed config per stage, the candidate pool, the default stages.

`recsemble evaluate --rerank diverse,fair` and the serving pipeline name stages from here;
"diverse" is the default diversity stage (`diverse = "mmr"` or "dpp", with that stage's
settings).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from recsemble.errors import ConfigError
from recsemble.rerank.base import Reranker, RerankerConfig
from recsemble.rerank.calibrated import Calibrated, CalibratedConfig
from recsemble.rerank.diversity import DPP, MMR, CapConfig, CategoryCap, DPPConfig, MMRConfig
from recsemble.rerank.exploration import Exploration, ExploreConfig
from recsemble.rerank.fairness import ExposureFloor, FairConfig
from recsemble.rerank.filters import (
    AvailabilityConfig,
    AvailabilityFilter,
    QualityConfig,
    QualityFilter,
    RuleFilter,
    RulesConfig,
    SeenConfig,
    SeenFilter,
)
from recsemble.rerank.transforms import AttributeBoost, BoostConfig, FreshConfig, FreshnessBoost
from recsemble.strict import StrictConfig

#: Every stage by its name, in a sensible order of application (filters first).
RERANKERS: dict[str, type[Reranker]] = {
    cls.name: cls
    for cls in (
        SeenFilter,
        AvailabilityFilter,
        RuleFilter,
        QualityFilter,
        FreshnessBoost,
        AttributeBoost,
        Calibrated,
        MMR,
        DPP,
        CategoryCap,
        ExposureFloor,
        Exploration,
    )
}
DIVERSE = "diverse"  # alias of the default diversity stage


class RerankConfig(StrictConfig):
    pool: int = Field(100, ge=1, le=5000)  # candidates the model hands the stages, per request
    diverse: Literal["mmr", "dpp"] = "mmr"
    stages: list[str] = Field(default_factory=list)  # applied by default when serving
    seen: SeenConfig = Field(default_factory=SeenConfig)
    available: AvailabilityConfig = Field(default_factory=AvailabilityConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    fresh: FreshConfig = Field(default_factory=FreshConfig)
    boost: BoostConfig = Field(default_factory=BoostConfig)
    calibrated: CalibratedConfig = Field(default_factory=CalibratedConfig)
    mmr: MMRConfig = Field(default_factory=MMRConfig)
    dpp: DPPConfig = Field(default_factory=DPPConfig)
    cap: CapConfig = Field(default_factory=CapConfig)
    fair: FairConfig = Field(default_factory=FairConfig)
    explore: ExploreConfig = Field(default_factory=ExploreConfig)

    def stage_name(self, name: str) -> str:
        """The real stage behind a name ("diverse" -> the configured diversity stage)."""
        return self.diverse if name == DIVERSE else name

    def stage_config(self, name: str) -> RerankerConfig:
        config: RerankerConfig = getattr(self, self.stage_name(name))
        return config

    def with_value(self, stage: str, key: str, value: Any) -> RerankConfig:
        """A copy with one stage setting changed (validated), e.g. ("mmr", "lambda", 0.3)."""
        data = self.model_dump(by_alias=True)
        data[self.stage_name(stage)][key] = value
        return RerankConfig.model_validate(data)


def check_stage_names(names: Sequence[str]) -> list[str]:
    """The names, validated: each a stage or "diverse", none twice."""
    valid = [*RERANKERS, DIVERSE]
    if isinstance(names, str):  # its characters would be the stage names
        raise ConfigError(f"re-rankers are a list of names, not the string {names!r}")
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown re-ranker {name!r}{hint} valid: {', '.join(sorted(valid))}")
    if len(set(names)) != len(names):
        raise ConfigError(f"re-ranker listed twice in {list(names)}")
    return list(names)


def build_stages(config: RerankConfig, names: Sequence[str]) -> list[Reranker]:
    """Unfitted stages, in the given order."""
    stages = []
    for name in check_stage_names(names):
        real = config.stage_name(name)
        stages.append(RERANKERS[real](config.stage_config(real)))
    return stages
