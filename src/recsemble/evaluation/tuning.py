"""Hyper-parameter search per generator on the protocol's VALIDATION window.

Each trial fits on `validation_split(outer).train` and measures one metric (NDCG@10 by default)
on `validation_split(outer).test`. Only that validation split ever reaches `tune_model`: the
outer test part is never fitted on nor measured, so a figure later measured on it with the tuned
config is an honest held-out figure.

Search spaces are plain data next to each model name. Every key must be a field of the model's
Config and every bound / choice must validate against it (`check_space`; the tests run it over
every space, `tune` over the requested ones).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from recsemble.config import RecsembleConfig
from recsemble.errors import ConfigError
from recsemble.evaluation.metrics import ACCURACY_METRICS, compute_metrics
from recsemble.evaluation.protocol import Split, validation_split
from recsemble.evaluation.runner import catalog_stats, recommend_for_split, truth_matrix
from recsemble.generators import GENERATORS, CandidateGenerator

#: on_trial(model name, trials done, trials planned, best value so far)
TrialCallback = Callable[[str, int, int, float], None]

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


def parse_metric(metric: str) -> tuple[str, int]:
    """'ndcg@10' -> ('ndcg', 10)."""
    match = re.fullmatch(r"([a-z]+)@(\d+)", metric.strip().lower())
    if match is None or match.group(1) not in ACCURACY_METRICS or int(match.group(2)) < 1:
        raise ConfigError(
            f"metric {metric!r} must look like ndcg@10; metrics: {', '.join(ACCURACY_METRICS)}"
        )
    return match.group(1), int(match.group(2))


# ---------------------------------------------------------------------------- searching
@dataclass(frozen=True)
class TuningResult:
    model: str
    params: dict[str, Any]  # the model's config overrides: the base ones and the best trial's
    best_value: float
    base_value: float | None  # the un-tuned config's value (trial 0), when it lies in the space
    n_trials: int  # completed trials
    seconds: float


@dataclass(frozen=True)
class TuningReport:
    metric: str
    protocol: str
    n_validation_users: int
    results: dict[str, TuningResult]


class _Validation:
    """Fit on the validation split's train part, measure on its test part."""

    def __init__(self, split: Split, metric: str) -> None:
        self.split = split
        self.metric, self.k = parse_metric(metric)
        self.users = split.evaluated_users
        if self.users.size == 0:
            raise ConfigError("the validation window has no users with held-out interactions")
        self.truth = truth_matrix(split, self.users)
        self.stats = catalog_stats(split)

    def measure(self, model: CandidateGenerator) -> float:
        model.fit(self.split.train)
        top = recommend_for_split(model, self.split, self.users, self.k)
        result = compute_metrics(top.items, self.truth, self.k, self.stats)
        return float(getattr(result, self.metric).mean())


def tune_model(
    name: str,
    validation: Split,
    *,
    base_params: Mapping[str, Any] | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    metric: str = "ndcg@10",
    seed: int = 0,
    on_trial: TrialCallback | None = None,
) -> TuningResult:
    """TPE search (fixed seed) over SEARCH_SPACES[name]; trial 0 is the base config."""
    import optuna

    if n_trials < 1:
        raise ConfigError(f"trials must be >= 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    check_space(name)
    space = search_space(name)
    base = dict(base_params or {})
    config_cls = GENERATORS[name].Config
    defaults = config_cls.model_validate(base).model_dump()
    objective = _Validation(validation, metric)
    start_values = {key: defaults[key] for key in space if space[key].contains(defaults[key])}

    errors: list[str] = []

    def run_trial(trial: Any) -> float:
        params = {**base, **{key: spec.suggest(trial, key) for key, spec in space.items()}}
        trial.set_user_attr("params", params)
        try:
            return objective.measure(GENERATORS[name](config_cls.model_validate(params)))
        except ValueError as exc:  # e.g. a singular system for extreme values: a failed trial
            errors.append(f"{type(exc).__name__}: {exc}")
            raise

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.enqueue_trial(start_values)
        started = time.perf_counter()

        def progress(study: Any, trial: Any) -> None:
            if on_trial is not None:
                done = sum(t.state.is_finished() for t in study.trials)
                best = _best_value(study)
                on_trial(name, done, n_trials, best)

        study.optimize(
            run_trial, n_trials=n_trials, timeout=timeout, callbacks=[progress], catch=(ValueError,)
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    complete = [t for t in study.trials if t.value is not None]
    if not complete:
        last = f"; last error: {errors[-1]}" if errors else ""
        raise ConfigError(f"no trial of {name!r} completed{last}")
    first = study.trials[0]
    return TuningResult(
        model=name,
        params=dict(study.best_trial.user_attrs["params"]),
        best_value=float(study.best_value),
        base_value=first.value if len(start_values) == len(space) else None,
        n_trials=len(complete),
        seconds=time.perf_counter() - started,
    )


def _best_value(study: Any) -> float:
    values = [t.value for t in study.trials if t.value is not None]
    return max(values) if values else math.nan


def tune(
    config: RecsembleConfig,
    models: Sequence[str],
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    metric: str = "ndcg@10",
    seed: int = 0,
    on_trial: TrialCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TuningReport:
    """Tune each model in turn on the validation window of the configured protocol."""
    from recsemble.evaluation.workflow import load_and_split

    if not models:
        raise ConfigError(f"no models to tune; tunable models: {', '.join(sorted(SEARCH_SPACES))}")
    parse_metric(metric)
    for name in models:
        check_space(name)
    _, outer = load_and_split(config)
    validation = validation_split(outer, config.protocol.test_fraction)
    del outer  # from here on only the validation window exists
    if log:
        log(
            f"validation window ({config.protocol.name}): {validation.train.n_interactions:,} "
            f"fit, {validation.test.n_interactions:,} held out, "
            f"{validation.evaluated_users.size:,} users"
        )
    results = {
        name: tune_model(
            name,
            validation,
            base_params=config.models.get(name, {}),
            n_trials=n_trials,
            timeout=timeout,
            metric=metric,
            seed=seed,
            on_trial=on_trial,
        )
        for name in models
    }
    return TuningReport(
        metric=metric,
        protocol=config.protocol.name,
        n_validation_users=int(validation.evaluated_users.size),
        results=results,
    )


# ---------------------------------------------------------------------------- writing TOML
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write {value} to a config")
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to a TOML config")


def _table(name: str, values: Mapping[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in values.items() if v is not None]
    return [*lines, ""]


def render_config(config: RecsembleConfig, report: TuningReport, command: str) -> str:
    """The tuned configuration as TOML, with a comment header saying how it was made."""
    data = config.data.model_dump(exclude_defaults=True, exclude={"data_dir"})
    data = {"dataset": config.data.dataset, **data}
    protocol = config.protocol.model_dump(include={"name", "test_fraction", "k"})
    protocol["min_user_interactions"] = config.protocol.min_user_interactions
    names = list(report.results)
    header = [
        "# Tuned hyper-parameters, written by `recsemble tune`. Reproduce with:",
        f"#   {command}",
        f"# Optuna TPE per model on the validation window of {report.protocol} (the outer train",
        "# part split again by the same rule); the outer test part was never fitted on or scored.",
        f"# Validation {report.metric} over {report.n_validation_users:,} users "
        "(base = the config before tuning):",
        f"#   {'model':<16}{'trials':>7}{'base':>9}{'best':>9}{'seconds':>9}",
    ]
    for name, result in report.results.items():
        base = "-" if result.base_value is None else f"{result.base_value:.4f}"
        header.append(
            f"#   {name:<16}{result.n_trials:>7}{base:>9}{result.best_value:>9.4f}"
            f"{result.seconds:>9.1f}"
        )
    lines = [*header, ""]
    lines += _table("data", data)
    lines += _table("protocol", protocol)
    lines += _table("evaluate", {"models": names, "baseline": config.evaluate.baseline})
    sections = {name: dict(params) for name, params in config.models.items()}
    sections.update({name: result.params for name, result in report.results.items()})
    for name, params in sections.items():
        if params:
            lines += _table(f"models.{name}", params)
    return "\n".join(lines).rstrip() + "\n"


def write_config(
    path: str | Path, config: RecsembleConfig, report: TuningReport, command: str
) -> Path:
    """Write render_config(...) to path (folders created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_config(config, report, command), encoding="utf-8")
    return out
