"""Hyper-parameter search per generator on the protocol's VALIDATION window.

Each trial fits on `validation_split(outer).train` and measures one metric (NDCG@10 by default)
on `validation_split(outer).test`. Only that validation split ever reaches `tune_model`: the
outer test part is never fitted on nor measured, so a figure later measured on it with the tuned
config is an honest held-out figure.

Search spaces live in `recsemble.evaluation.search_spaces`.
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

from recsemble.config import RecsembleConfig
from recsemble.errors import ConfigError
from recsemble.evaluation.metrics import ACCURACY_METRICS, compute_metrics
from recsemble.evaluation.protocol import Split, validation_split
from recsemble.evaluation.runner import catalog_stats, recommend_for_split, truth_matrix
from recsemble.evaluation.search_spaces import SEARCH_SPACES, check_space, search_space
from recsemble.generators import GENERATORS, CandidateGenerator

#: on_trial(model name, trials done, trials planned, best value so far)
TrialCallback = Callable[[str, int, int, float], None]


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


class ValidationObjective:
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
    objective = ValidationObjective(validation, metric)
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
