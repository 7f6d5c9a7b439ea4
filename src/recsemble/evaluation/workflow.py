"""`recsemble evaluate` as a library call: load -> prepare -> split -> fit -> rank -> measure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, DataError
from recsemble.evaluation import extras
from recsemble.evaluation.files import write_dump, write_results
from recsemble.evaluation.protocol import Split, prepare, split
from recsemble.evaluation.runner import Evaluation, Model, Progress, evaluate, to_results_json
from recsemble.evaluation.sweep import Variant, parse_sweep, reranked_variants, variants
from recsemble.generators import GENERATORS, CandidateGenerator

POPULARITY = "pop"  # the baseline every table shows, whatever evaluate.baseline is


@dataclass(frozen=True)
class EvaluationOutcome:
    evaluation: Evaluation
    results: dict[str, Any]

    def write_json(self, path: Path) -> None:
        write_results(self.results, path)

    def write_dump(self, out_dir: Path) -> list[Path]:
        return write_dump(self.evaluation, out_dir)


def build_model(config: RecsembleConfig, name: str) -> Model:
    """One configured model: a generator by name, or the ensemble over its members."""
    if name == "ensemble":
        from recsemble.ranking.training import ReportingEnsemble

        return ReportingEnsemble(config)  # an Ensemble whose fit the progress bar counts
    generator: CandidateGenerator = GENERATORS[name](config.model_config_for(name))
    return generator


def build_models(config: RecsembleConfig) -> tuple[dict[str, Model], list[Variant]]:
    """The configured models, the baseline first (it is always evaluated, and so is `pop`,
    whatever the baseline), then their re-ranked variants (`evaluate.rerank`,
    `evaluate.sweep`), which reuse the plain fit."""
    ordered = evaluated_names(config)
    models: dict[str, Model] = {name: build_model(config, name) for name in ordered}
    evaluate = config.evaluate
    sweeps = [parse_sweep(text, config.rerank) for text in evaluate.sweep]
    reranked = evaluate.models if evaluate.rerank_models is None else evaluate.rerank_models
    unknown = sorted(set(reranked) - set(evaluate.models))
    if unknown:
        raise ConfigError(f"evaluate.rerank_models {unknown} are not in evaluate.models")
    specs = variants(reranked, evaluate.rerank, sweeps, config.rerank)
    models.update(reranked_variants(models, specs))
    return models, specs


def evaluated_names(config: RecsembleConfig) -> list[str]:
    """The baseline, popularity (always in the table), then the configured models, once each."""
    return list(dict.fromkeys([config.evaluate.baseline, POPULARITY, *config.evaluate.models]))


def load_prepared(config: RecsembleConfig) -> Dataset:
    """The configured data set, prepared by the protocol's rules, not split."""
    return _load(config, for_training=False)


def load_training_data(config: RecsembleConfig) -> Dataset:
    """The configured data set as a model for serving learns from it: duplicates collapsed
    as the protocol does, but every user and item kept (a user with 3 purchases must not be
    a stranger to the served model, nor an item with no interaction yet to its catalog)."""
    return _load(config, for_training=True)


def _load(config: RecsembleConfig, *, for_training: bool) -> Dataset:
    from recsemble.data.loaders import load_dataset

    data = config.data
    raw = load_dataset(
        data.dataset,
        data_dir=data.data_dir,
        event_weights=data.event_weights,
        columns=data.columns or None,
    )
    min_interactions = 1 if for_training else config.protocol.min_user_interactions
    prepared = prepare(
        raw,
        min_user_interactions=min_interactions,
        min_value=data.min_value,
        keep_catalog=for_training,
    )
    if prepared.n_interactions == 0 and raw.n_interactions > 0:
        valued = "" if data.min_value is None else f" with value >= {data.min_value:g}"
        if for_training:
            raise DataError(f"{data.dataset}: no interaction{valued} is left to train on")
        raise DataError(
            f"{data.dataset}: none of its {raw.n_users:,} users has the {min_interactions} "
            f"distinct interactions{valued} the protocol needs "
            "(protocol.min_user_interactions); nothing is left to evaluate"
        )
    return prepared


#: From this share of test interactions tied with their user's reference time on, evaluate
#: warns (ml-100k: 0.057, ml-latest-small: 0.012).
TIE_WARNING_SHARE = 0.1


def tie_warning(share: float) -> str:
    return (
        f"warning: {share:.0%} of the test interactions have the timestamp of the split point "
        "(their user's last train interaction, or the cutoff); the protocol splits such ties "
        "by item id, an order that models learning from validation targets (the ensemble's "
        "ranker) can pick up, so these figures may not carry to production"
    )


def load_and_split(config: RecsembleConfig) -> tuple[Dataset, Split]:
    prepared = load_prepared(config)
    return prepared, split(prepared, config.protocol.name, config.protocol.test_fraction)


def run_evaluation(
    config: RecsembleConfig,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> EvaluationOutcome:
    models, specs = build_models(config)  # first: a bad sweep or stage fails before loading
    prepared, the_split = load_and_split(config)
    if log:
        log(
            f"{prepared!r} -> {config.protocol.name}: {the_split.train.n_interactions:,} train, "
            f"{the_split.test.n_interactions:,} test, "
            f"{the_split.evaluated_users.size:,} users evaluated"
        )
        if the_split.boundary_tie_share >= TIE_WARNING_SHARE:
            log(tie_warning(the_split.boundary_tie_share))
    evaluation = evaluate(the_split, models, config.protocol.k, progress)
    meta = {
        "dataset": config.data.dataset,
        "protocol": config.protocol.name,
        "test_fraction": config.protocol.test_fraction,
        "min_user_interactions": config.protocol.min_user_interactions,
        "min_value": config.data.min_value,
        "k": list(config.protocol.k),
        "bootstrap_resamples": config.protocol.bootstrap_resamples,
        "seed": config.protocol.seed,
        "boundary_tie_share": the_split.boundary_tie_share,
        "split_sha256": the_split.fingerprint,
    }
    results = to_results_json(evaluation, meta)
    baseline, first_k = config.evaluate.baseline, config.protocol.k[0]
    extras.add_roles(results, baseline, specs)
    extras.add_item_slices(results, evaluation)
    protocol = config.protocol
    extras.add_comparisons(
        results, evaluation, baseline, n_resamples=protocol.bootstrap_resamples, seed=protocol.seed
    )
    extras.add_decisions(results, first_k)
    if config.evaluate.analyze and "ensemble" in models:
        from recsemble.ranking.ensemble import Ensemble

        ens = models["ensemble"]
        assert isinstance(ens, Ensemble)
        extras.add_ensemble_diagnostics(
            results["ensemble"],
            ens,
            the_split,
            first_k,
            progress,
            max_users=config.evaluate.analysis_users,
        )
    return EvaluationOutcome(evaluation, results)
