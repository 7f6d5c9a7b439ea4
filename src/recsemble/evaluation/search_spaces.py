"""Search spaces of `recsemble tune`: plain data next to each model name, validated.

Every key must be a field of the model's Config and every bound / choice must validate against
it (`check_space`; the tests run it over every space, `tune` over the requested ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS

_FLOAT_DIGITS = 3  # sampled floats are rounded so configs stay readable and exact
_LOG_RANGE = {"log": True}

# One entry per tunable key: {"int": [low, high]} or {"float": [low, high]} (optionally
# "log": true or "step": s), or {"choices": [...]}.
SEARCH_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "pop-trending": {"half_life_days": {"float": [0.25, 180.0], **_LOG_RANGE}},
    "pop-rating": {"prior_count": {"float": [0.0, 200.0]}},
    "itemknn": {
        "neighbors": {"int": [5, 1000], **_LOG_RANGE},
        "shrink": {"float": [0.0, 200.0]},
        "weighting": {"choices": ["none", "bm25", "tfidf"]},
        "alpha": {"float": [0.0, 1.0]},
        "prune": {"choices": ["target", "source"]},
    },
    "itemknn-recent": {
        "neighbors": {"int": [5, 1000], **_LOG_RANGE},
        "shrink": {"float": [0.0, 200.0]},
        "weighting": {"choices": ["none", "bm25", "tfidf"]},
        "alpha": {"float": [0.0, 1.0]},
        "prune": {"choices": ["target", "source"]},
        "half_life_events": {"float": [1.0, 500.0], **_LOG_RANGE},
    },
    "userknn": {
        "neighbors": {"int": [5, 500], **_LOG_RANGE},
        "shrink": {"float": [0.0, 200.0]},
        "weighting": {"choices": ["none", "bm25", "tfidf"]},
        "neighbourhood": {"choices": ["user", "item"]},
    },
    "ials": {
        "factors": {"int": [8, 256], **_LOG_RANGE},
        "regularization": {"float": [0.01, 500.0], **_LOG_RANGE},
        "alpha": {"float": [0.5, 100.0], **_LOG_RANGE},
        "iterations": {"int": [5, 40]},
    },
    "bpr": {
        "factors": {"int": [8, 256], **_LOG_RANGE},
        "learning_rate": {"float": [0.001, 0.1], **_LOG_RANGE},
        "regularization": {"float": [0.0001, 0.1], **_LOG_RANGE},
        "iterations": {"int": [20, 400], **_LOG_RANGE},
    },
    "ease": {"l2": {"float": [10.0, 5000.0], **_LOG_RANGE}},
    "ease-recent": {
        "l2": {"float": [10.0, 5000.0], **_LOG_RANGE},
        "half_life_events": {"float": [1.0, 500.0], **_LOG_RANGE},
    },
    "content": {
        "min_df": {"int": [1, 10]},
        "ngram_max": {"int": [1, 3]},
        "sublinear_tf": {"choices": [True, False]},
        "half_life_events": {"float": [0.5, 200.0], **_LOG_RANGE},
    },
    "covisit": {
        "window": {"int": [1, 50], **_LOG_RANGE},
        "half_life_events": {"float": [0.5, 100.0], **_LOG_RANGE},
        "directed": {"choices": [True, False]},
        "backward_weight": {"float": [0.0, 1.0]},
        "power": {"float": [0.0, 2.0]},
        "source_norm": {"float": [0.0, 1.0]},
        "target_norm": {"float": [0.0, 1.0]},
        "neighbors": {"int": [10, 1000], **_LOG_RANGE},
    },
}


class ParamSpec(BaseModel):
    """One key's range: exactly one of int / float / choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str | int | float | bool, ...] | None = None
    log: bool = False
    step: float | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ParamSpec:
        renamed = {
            {"int": "int_range", "float": "float_range"}.get(k, k): v for k, v in raw.items()
        }
        return cls.model_validate(renamed)

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        kinds = [self.int_range, self.float_range, self.choices]
        if sum(kind is not None for kind in kinds) != 1:
            raise ValueError("give exactly one of int, float or choices")
        bounds = self.int_range or self.float_range
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"low must be below high, got {bounds}")
        if self.log and (bounds is None or bounds[0] <= 0 or self.step is not None):
            raise ValueError("log needs a positive numeric range and no step")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        return self

    def values_to_check(self) -> list[Any]:
        """Bounds and choices: each must be a valid value of the config field."""
        return list(self.choices or self.int_range or self.float_range or ())

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        low, high = self.int_range or self.float_range or (0, 0)
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        )

    def suggest(self, trial: Any, key: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(key, list(self.choices))
        if self.int_range is not None:
            step = int(self.step or 1)
            return trial.suggest_int(key, *self.int_range, log=self.log, step=step)
        assert self.float_range is not None
        value = trial.suggest_float(key, *self.float_range, log=self.log, step=self.step)
        return _round(value)


def _round(value: float) -> float:
    return 0.0 if value == 0 else float(f"{value:.{_FLOAT_DIGITS}g}")


def search_space(name: str) -> dict[str, ParamSpec]:
    """The parsed space of a model; ConfigError when it has none."""
    if name not in SEARCH_SPACES:
        raise ConfigError(
            f"no search space for {name!r}; tunable models: {', '.join(sorted(SEARCH_SPACES))}"
        )
    try:
        return {key: ParamSpec.parse(raw) for key, raw in SEARCH_SPACES[name].items()}
    except ValidationError as exc:
        raise ConfigError(f"search space of {name!r} is malformed: {exc}") from None


def check_space(name: str) -> None:
    """Every key is a field of the model's Config and every bound / choice validates."""
    space = search_space(name)
    if name not in GENERATORS:
        raise ConfigError(f"search space for unknown model {name!r}")
    config_cls = GENERATORS[name].Config
    for key, spec in space.items():
        if key not in config_cls.model_fields:
            raise ConfigError(
                f"search space of {name!r}: {key!r} is not a {config_cls.__name__} field "
                f"({', '.join(config_cls.model_fields)})"
            )
        for value in spec.values_to_check():
            try:
                config_cls.model_validate({key: value})
            except ValidationError as exc:
                raise ConfigError(f"search space of {name!r}: {key}={value!r}: {exc}") from None


def tunable(models: Sequence[str]) -> list[str]:
    """The given models that have a search space (the others keep their config)."""
    return [name for name in models if name in SEARCH_SPACES]
