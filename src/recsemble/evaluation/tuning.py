"""Hyper-parameter search per generator on the protocol's VALIDATION window.

Each trial fits on `validation_split(outer).train` and measures one metric (NDCG@10 by default)
on `validation_split(outer).test`. Only that validation split ever reaches `tune_model`: the
outer test part is never fitted on nor measured, so a figure later measured on it with the tuned
config is an honest held-out figure.

A validation gain is only as good as its noise: with `min_gain_se` > 0 the best trial replaces
the base config only when its per-user paired gain over it exceeds that many standard errors
(the one-standard-error rule); a smaller "gain" picks the window's noise, and did not carry to
the test part when measured (BENCHMARKS.md, issue 3).

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
import numpy.typing as npt
from pydantic import ValidationError

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
    params: dict[str, Any]  # the model's config overrides: the base ones and the chosen trial's
    value: float  # the chosen config's validation value (the best trial's or the base's)
    best_value: float
    base_value: float | None  # the un-tuned config's value (trial 0), when it lies in the space
    n_trials: int  # completed trials
    seconds: float
    # The best trial's paired gain over the base in standard errors (None: no base to compare);
    # kept_base: that gain was under min_gain_se, so params are the base config's.
    gain_se: float | None = None
    kept_base: bool = False


@dataclass(frozen=True)
class TuningReport:
    metric: str
    protocol: str
    n_validation_users: int
    results: dict[str, TuningResult]
    min_gain_se: float = 1.0


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
        return float(self.per_user(model).mean())

    def per_user(self, model: CandidateGenerator) -> npt.NDArray[np.float64]:
        """The metric of each validation user (in `self.users` order) after fitting model."""
        model.fit(self.split.train)
        top = recommend_for_split(model, self.split, self.users, self.k)
        result = compute_metrics(top.items, self.truth, self.k, self.stats)
        return np.asarray(getattr(result, self.metric), dtype=np.float64)


def paired_gain_se(gain: npt.NDArray[np.float64]) -> float:
    """Mean per-user gain over its standard error (inf for a constant positive gain)."""
    if gain.size < 2:
        return 0.0
    mean, se = float(gain.mean()), float(gain.std(ddof=1) / math.sqrt(gain.size))
    if se == 0.0:
        return math.inf if mean > 0 else 0.0
    return mean / se


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
    min_gain_se: float = 1.0,
) -> TuningResult:
    """TPE search (fixed seed) over SEARCH_SPACES[name]; trial 0 is the base config, kept unless
    the best trial beats it by more than min_gain_se standard errors (0: the best always wins)."""
    _check_tuning_args(name, n_trials, timeout, min_gain_se)
    space = search_space(name)
    base = dict(base_params or {})
    defaults = GENERATORS[name].Config.model_validate(base).model_dump()
    start_values = {key: defaults[key] for key in space if space[key].contains(defaults[key])}
    _check_base_takes_the_space(name, base, start_values)
    search = _Search(name, base, ValidationObjective(validation, metric))
    started = time.perf_counter()
    study = search.run(start_values, n_trials, timeout, seed, on_trial)
    complete = [t for t in study.trials if t.value is not None]
    if not complete:
        last = f"; last error: {search.errors[-1]}" if search.errors else ""
        raise ConfigError(f"no trial of {name!r} completed{last}")
    first, best = study.trials[0], study.best_trial
    base_value = first.value if len(start_values) == len(space) else None
    gain_se = None
    if base_value is not None and first.number in search.per_user:
        gain_se = paired_gain_se(search.per_user[best.number] - search.per_user[first.number])
    kept_base = gain_se is not None and best.number != first.number and gain_se <= min_gain_se
    chosen = first if kept_base else best
    best_value = float(study.best_value)
    return TuningResult(
        model=name,
        params=dict(chosen.user_attrs["params"]),
        value=base_value if kept_base and base_value is not None else best_value,
        best_value=best_value,
        base_value=base_value,
        n_trials=len(complete),
        seconds=time.perf_counter() - started,
        gain_se=gain_se,
        kept_base=kept_base,
    )


def _check_base_takes_the_space(name: str, base: dict[str, Any], values: dict[str, Any]) -> None:
    """Every trial sets the searched keys over the base config: refuse up front when the two
    cannot go together (e.g. pop-trending's window_days replaces the searched half-life)."""
    try:
        GENERATORS[name].Config.model_validate({**base, **values})
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"cannot tune {name}: it searches {sorted(values)} and the config's "
            f"[models.{name}] {base} does not take them ({reason})"
        ) from None


def _check_tuning_args(name: str, n_trials: int, timeout: float | None, min_gain_se: float) -> None:
    if n_trials < 1:
        raise ConfigError(f"trials must be >= 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if not min_gain_se >= 0:
        raise ConfigError(f"min_gain_se must be >= 0 standard errors, got {min_gain_se}")
    check_space(name)


class _Search:
    """One model's Optuna study; keeps each trial's per-user values for the paired comparison."""

    def __init__(self, name: str, base: dict[str, Any], objective: ValidationObjective) -> None:
        self.name, self.base, self.objective = name, base, objective
        self.space = search_space(name)
        self.errors: list[str] = []
        self.per_user: dict[int, npt.NDArray[np.float64]] = {}  # by trial number

    def trial(self, trial: Any) -> float:
        suggested = {key: spec.suggest(trial, key) for key, spec in self.space.items()}
        params = {**self.base, **suggested}
        trial.set_user_attr("params", params)
        model_cls = GENERATORS[self.name]
        try:
            values = self.objective.per_user(model_cls(model_cls.Config.model_validate(params)))
        except ValueError as exc:  # e.g. a singular system for extreme values: a failed trial
            self.errors.append(f"{type(exc).__name__}: {exc}")
            raise
        self.per_user[trial.number] = values
        return float(values.mean())

    def run(
        self,
        start_values: dict[str, Any],
        n_trials: int,
        timeout: float | None,
        seed: int,
        on_trial: TrialCallback | None,
    ) -> Any:
        import optuna

        def progress(study: Any, trial: Any) -> None:
            if on_trial is not None:
                done = sum(t.state.is_finished() for t in study.trials)
                on_trial(self.name, done, n_trials, _best_value(study))

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            sampler = optuna.samplers.TPESampler(seed=seed)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.enqueue_trial(start_values)
            study.optimize(
                self.trial,
                n_trials=n_trials,
                timeout=timeout,
                callbacks=[progress],
                catch=(ValueError,),
            )
        finally:
            optuna.logging.set_verbosity(verbosity)
        return study


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
    min_gain_se: float = 1.0,
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
            min_gain_se=min_gain_se,
        )
        for name in models
    }
    return TuningReport(
        metric=metric,
        protocol=config.protocol.name,
        n_validation_users=int(validation.evaluated_users.size),
        results=results,
        min_gain_se=min_gain_se,
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


def _unset_as_none(value: Any) -> Any:
    """A config value with None spelt "none" (TOML has no null; settings read it back)."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return {k: _unset_as_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_unset_as_none(v) for v in value]
    return value


def _settings_sections(config: RecsembleConfig, tuned: list[str]) -> list[str]:
    """[protocol], [evaluate], [ensemble] and [rerank] as the input config set them, so that
    evaluating the written file runs the same experiment with the tuned models."""
    protocol = config.protocol.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    for key in ("name", "test_fraction", "k", "min_user_interactions"):
        protocol[key] = getattr(config.protocol, key)  # spelt out: defaults may change
    evaluate = config.evaluate.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    given = config.evaluate.models if "models" in config.evaluate.model_fields_set else []
    # Models with re-ranking variants are evaluated too (evaluate refuses the file otherwise).
    reranked = config.evaluate.rerank_models or []
    evaluate["models"] = list(dict.fromkeys([*given, *tuned, *reranked]))
    evaluate["baseline"] = config.evaluate.baseline
    lines = _table("protocol", _unset_as_none(protocol))
    lines += _table("evaluate", _unset_as_none(evaluate))
    for name, part in (("ensemble", config.ensemble), ("rerank", config.rerank)):
        values = part.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        if values:
            lines += _table(name, _unset_as_none(values))
    return lines


def render_config(config: RecsembleConfig, report: TuningReport, command: str) -> str:
    """The tuned configuration as TOML, with a comment header saying how it was made."""
    data = config.data.model_dump(exclude_defaults=True, exclude={"data_dir"})
    data = {"dataset": config.data.dataset, **data}
    names = list(report.results)
    header = [
        "# Tuned hyper-parameters, written by `recsemble tune`. Reproduce with:",
        f"#   {command}",
        f"# Optuna TPE per model on the validation window of {report.protocol} (the outer train",
        "# part split again by the same rule); the outer test part was never fitted on or scored.",
        f"# Validation {report.metric} over {report.n_validation_users:,} users "
        "(base = the config before tuning):",
        "# (gain/SE: the best trial's paired per-user gain over the base in standard errors;",
        f"# at most {report.min_gain_se:g} is noise, and * marks the base config kept for it):",
        f"#   {'model':<16}{'trials':>7}{'base':>9}{'best':>9}{'gain/SE':>9}{'seconds':>9}",
    ]
    for name, result in report.results.items():
        base = "-" if result.base_value is None else f"{result.base_value:.4f}"
        gain = "-" if result.gain_se is None else f"{result.gain_se:.2f}"
        mark = "*" if result.kept_base else ""
        header.append(
            f"#   {name:<16}{result.n_trials:>7}{base:>9}{result.best_value:>9.4f}"
            f"{gain + mark:>9}{result.seconds:>9.1f}"
        )
    lines = [*header, ""]
    lines += _table("data", data)
    lines += _settings_sections(config, names)
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
