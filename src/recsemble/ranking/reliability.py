"""Reliability curves of a fitted ensemble on a test split: are its probabilities honest?

For the calibrated meta-ranker (when `ensemble.calibration` is set, or the blend ranker) and
for every member (its rank mapped to P(interaction) by an isotonic calibrator fitted on the
ensemble's validation requests), predicted probability against the observed hit rate, in
equal-mass bins: nearly all candidate pairs are rare positives, so equal-width bins would put
almost everything in the first bin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.ranking.analysis import evaluation_pool, validation_pool
from recsemble.ranking.calibration import MemberCalibrators, reliability
from recsemble.ranking.selection import RankingPool

if TYPE_CHECKING:
    from recsemble.evaluation.protocol import Split
    from recsemble.ranking.ensemble import Ensemble

F32 = npt.NDArray[np.float32]
STRATEGY: Literal["quantile"] = "quantile"


def reliability_curves(
    ens: Ensemble,
    the_split: Split,
    bins: int = 10,
    test_pool: tuple[RankingPool, F32, sp.csr_array] | None = None,
) -> dict[str, Any]:
    """{"kind", "strategy", "curves": {name: {"ece", "mean_predicted", "observed", "count"}}};
    `test_pool`: evaluation_pool(ens, the_split) when the caller has it already."""
    test, scores, _ = test_pool or evaluation_pool(ens, the_split)
    curves: dict[str, Any] = {}
    if ens.calibrator_ is not None or ens.blend_ is not None:
        curves["ensemble"] = _curve(ens.probability(scores), test.labels, bins)
    train = validation_pool(ens)
    members = MemberCalibrators("rank").fit(train.candidates, train.labels)
    probabilities = members.predict(test.candidates)
    for m, label in enumerate(test.candidates.members):
        curves[label] = _curve(probabilities[:, m], test.labels, bins)
    kind = ens.config.calibration or ("blend" if ens.blend_ is not None else None)
    return {"kind": kind, "strategy": STRATEGY, "bins": bins, "curves": curves}


def _curve(probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int) -> dict[str, Any]:
    bins_of = reliability(probabilities, labels, bins, STRATEGY)
    keep = bins_of.count > 0  # equal-mass bins can coincide when many pairs tie

    def clean(values: npt.NDArray[np.float64]) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in values[keep]]

    return {
        "ece": float(bins_of.ece),
        "mean_predicted": clean(bins_of.mean_predicted),
        "observed": clean(bins_of.observed),
        "count": [int(c) for c in bins_of.count[keep]],
    }
