"""Production training: fit the configured model on the whole prepared data set and save it.

No test split: the ensemble cuts its own validation window(s) from the data to learn the
ranker, then refits its members on all of it. `fit_model` reports each stage through two
callbacks, so a command line (or a log) can show progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.ranking.config import MemberConfig
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.member_fitting import MemberFitter, fit_here
from recsemble.ranking.persistence import Model
from recsemble.ranking.trainingset import TrainingSet

ENSEMBLE = "ensemble"
#: start(description): a stage begins; done(): one step of `training_steps` is complete.
StageStart = Callable[[str], None]
StepDone = Callable[[], None]


def _ignore_stage(_: str) -> None:
    pass


def _ignore_step() -> None:
    pass


def check_model_name(name: str) -> None:
    known = [ENSEMBLE, *GENERATORS]
    if name not in known:
        close = [k for k in known if k.lower() == name.lower()]
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown model {name!r}; {hint}choose from {', '.join(known)}")


def training_steps(config: RecsembleConfig, name: str) -> int:
    """Steps `fit_model` reports: for the ensemble, every member fit per validation fold and
    in the final refit, one training set per fold, and the ranker; one for a generator (the
    torch members: at most one per epoch)."""
    if name == ENSEMBLE:
        return ReportingEnsemble(config).fit_steps
    check_model_name(name)
    generator = GENERATORS[name](config.model_config_for(name))
    return int(getattr(generator, "fit_steps", 1))  # the torch members: one per epoch


def fit_model(
    config: RecsembleConfig,
    name: str,
    dataset: Dataset,
    start: StageStart = _ignore_stage,
    done: StepDone = _ignore_step,
    fit_member: MemberFitter = fit_here,
) -> Model:
    """Fit the ensemble (name "ensemble") or one configured generator on all of `dataset`;
    `fit_member` fits each generator (on Spark, say)."""
    check_model_name(name)
    if name == ENSEMBLE:
        return ReportingEnsemble(config, start, done, fit_member).fit(dataset)
    start(f"fit {name}")
    generator: CandidateGenerator = GENERATORS[name](config.model_config_for(name))
    report = getattr(generator, "report_fit", None)  # the torch members count their epochs
    if report is not None:
        report(start, done)
    generator = fit_member(generator, dataset)
    if report is None:
        done()
    return generator


class ReportingEnsemble(Ensemble):
    """An Ensemble whose fit announces each stage (Ensemble.fit takes no progress callback):
    `train` shows them, and `evaluate` counts them in its progress bar."""

    def __init__(
        self,
        config: RecsembleConfig,
        start: StageStart = _ignore_stage,
        done: StepDone = _ignore_step,
        fit_member: MemberFitter = fit_here,
    ) -> None:
        ensemble = config.ensemble
        if ensemble.validation_fraction is None:  # the protocol's fraction, as it asks
            fraction = config.protocol.test_fraction
            ensemble = ensemble.model_copy(update={"validation_fraction": fraction})
        super().__init__(
            ensemble, config.models, protocol=config.protocol.name, fit_member=fit_member
        )
        self.report_fit(start, done)

    @property
    def fit_steps(self) -> int:
        """Every member fit per validation fold and in the final refit, one training set per
        fold, and the ranker."""
        folds = self.config.validation_folds
        return (folds + 1) * len(self.serving_members) + folds + 1

    def report_fit(self, start: StageStart, done: StepDone) -> None:
        """Where the next fit announces its stages and steps."""
        self._start, self._done = start, done

    def fit(self, dataset: Dataset) -> Self:
        self._member_rounds = 0
        self._training_sets = 0
        return super().fit(dataset)

    def fit_members(
        self, dataset: Dataset, specs: list[MemberConfig]
    ) -> dict[str, CandidateGenerator]:
        folds = self.config.validation_folds
        final = self._member_rounds >= folds
        if final:
            self._done()  # the ranker has been trained: the refit on all data comes next
        stage = "refit on all data" if final else f"fold {self._member_rounds + 1}/{folds}"
        self._member_rounds += 1
        out: dict[str, CandidateGenerator] = {}
        for spec in specs:
            self._start(f"{stage}: fit {spec.label}")
            out |= super().fit_members(dataset, [spec])
            self._done()
        if not final:
            self._start(f"{stage}: candidates and features")
        return out

    def training_set(
        self, inner: Any, members: dict[str, CandidateGenerator], specs: list[MemberConfig]
    ) -> TrainingSet:
        out = super().training_set(inner, members, specs)
        self._training_sets += 1
        self._done()
        if self._training_sets == self.config.validation_folds:
            self._start("training the ranker")
        return out
