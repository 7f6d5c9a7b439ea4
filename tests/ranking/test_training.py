"""Production training: progress reporting does not change what the ensemble learns."""

from __future__ import annotations

import numpy as np
import pytest

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.ranking import Ensemble
from recsemble.ranking.training import fit_model, training_steps

CONFIG = RecsembleConfig.model_validate(
    {
        "models": {"itemknn": {"neighbors": 20}},
        "ensemble": {
            "members": [
                {"model": "pop"},
                {"model": "itemknn", "candidates": 30},
                {"model": "covisit", "candidates": 50},
            ],
            "validation_folds": 2,
            "ranker": {"kind": "logistic"},
        },
    }
)


def test_fit_model_reports_every_step_and_learns_what_fit_learns(small_data: Dataset) -> None:
    stages: list[str] = []
    steps = [0]

    def done() -> None:
        steps[0] += 1

    reported = fit_model(CONFIG, "ensemble", small_data, start=stages.append, done=done)
    assert steps[0] == training_steps(CONFIG, "ensemble") == 3 * 3 + 2 + 1
    assert stages[0] == "fold 1/2: fit pop"
    assert "training the ranker" in stages
    assert stages[-1] == "refit on all data: fit covisit"
    assert isinstance(reported, Ensemble)
    plain = Ensemble(CONFIG.ensemble, CONFIG.models, protocol=CONFIG.protocol.name).fit(small_data)
    users = np.arange(-1, small_data.n_users + 1)
    left, right = reported.recommend(users, 10), plain.recommend(users, 10)
    np.testing.assert_array_equal(left.items, right.items)
    np.testing.assert_array_equal(left.scores, right.scores)
    assert list(reported.fit_seconds_) == list(plain.fit_seconds_)


def test_fit_model_trains_one_generator(small_data: Dataset) -> None:
    model = fit_model(CONFIG, "itemknn", small_data)
    assert model.name == "itemknn" and training_steps(CONFIG, "itemknn") == 1
    with pytest.raises(ConfigError, match="unknown model"):
        fit_model(CONFIG, "no-such-model", small_data)


def test_evaluate_counts_each_step_of_the_ensembles_fit(small_data: Dataset) -> None:
    from recsemble.evaluation.protocol import split
    from recsemble.evaluation.runner import evaluate
    from recsemble.evaluation.workflow import build_model

    models = {name: build_model(CONFIG, name) for name in ("ensemble", "pop")}
    seen: list[tuple[str, str, int, int]] = []
    evaluate(split(small_data, "temporal-user"), models, progress=lambda *step: seen.append(step))
    fit = {name: [(d, t) for n, s, d, t in seen if n == name and s == "fit"] for name in models}
    total = training_steps(CONFIG, "ensemble")
    assert [done for done, _ in fit["ensemble"]] == [*range(total + 1), total]
    assert {steps for _, steps in fit["ensemble"]} == {total}
    assert fit["pop"] == [(0, 1), (1, 1)]


def test_validation_windows_hold_out_the_protocols_fraction(small_data: Dataset) -> None:
    from recsemble.evaluation.protocol import split
    from recsemble.generators import CandidateGenerator
    from recsemble.ranking.training import ReportingEnsemble
    from recsemble.ranking.trainingset import validation_source

    fitted_on: list[int] = []

    def fit_member(member: CandidateGenerator, data: Dataset) -> CandidateGenerator:
        fitted_on.append(data.n_interactions)
        return member.fit(data)

    values = CONFIG.model_dump()
    values["protocol"]["test_fraction"] = 0.4
    values["ensemble"]["validation_folds"] = 1
    ens = ReportingEnsemble(RecsembleConfig.model_validate(values), fit_member=fit_member)
    assert ens.config.validation_fraction == 0.4  # it was 0.2 whatever the protocol said
    ens.fit(small_data)
    source = validation_source(small_data, ens.config.validation_min_interactions)
    assert fitted_on[0] == split(source, "temporal-user", 0.4).train.n_interactions
    assert fitted_on[0] != split(source, "temporal-user", 0.2).train.n_interactions
    values["ensemble"]["validation_fraction"] = 0.1  # set: kept
    kept = ReportingEnsemble(RecsembleConfig.model_validate(values))
    assert kept.config.validation_fraction == 0.1


def test_members_that_can_count_causally_do() -> None:
    from recsemble.ranking.config import MemberConfig

    ens = Ensemble(CONFIG.ensemble, CONFIG.models)
    pop = ens.build_member(MemberConfig(model="pop"))
    assert pop.config.causal  # non-causal: later events of other users fed the ranker
    told = Ensemble(CONFIG.ensemble, {"pop": {"causal": False}})
    assert not told.build_member(MemberConfig(model="pop")).config.causal
    own = MemberConfig(model="pop", params={"causal": False})
    assert not ens.build_member(own).config.causal
    assert "causal" not in MemberConfig(model="itemknn").settings({})  # it cannot
