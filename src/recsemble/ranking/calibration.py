"""Calibration: scores mapped to probabilities of interaction, and how well that worked.

A ranker only needs the order of its scores; a probability is what a caller can threshold, mix
or explain. `Calibrator` maps one score column to P(interaction) (isotonic or Platt); NaN scores
(a member that did not propose or cannot score the pair) get the observed rate of their group.
`calibrate_ranker` fits one on honest scores: the meta-ranker is retrained K times, each time
without one fold of validation users, and scores only the users it did not train on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import numpy.typing as npt

from recsemble.errors import DataError
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.config import EnsembleConfig
from recsemble.ranking.metaranker import MetaRanker

if TYPE_CHECKING:  # ensemble.py may import this module to calibrate at fit time
    from recsemble.ranking.trainingset import TrainingSet

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
CalibratorKind = Literal["isotonic", "platt"]
#: The member column a calibrator reads (rank is read as -rank, so higher is better).
MemberColumn = Literal["score", "rank", "z"]


def sigmoid(x: npt.ArrayLike) -> F64:
    z = np.asarray(x, dtype=np.float64)
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * z))  # tanh form: no overflow warnings for large |z|
    return out


class Calibrator:
    """fit(scores, labels) -> self; predict(scores) -> P(label = 1), monotone in the score."""

    def __init__(self, kind: CalibratorKind = "isotonic") -> None:
        if kind not in ("isotonic", "platt"):
            raise ValueError(f"unknown calibrator kind {kind!r}; choose isotonic or platt")
        self.kind = kind

    def fit(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> Self:
        x = np.asarray(scores, dtype=np.float64).ravel()
        y = (np.asarray(labels).ravel() > 0).astype(np.float64)
        if x.shape != y.shape or x.size == 0:
            raise ValueError(
                f"need scores and labels of one non-zero length, got {x.shape}, {y.shape}"
            )
        missing = np.isnan(x)
        # The NaN group ("not proposed") is its own bucket: its rate is all that is known of it.
        self.missing_ = float(y[missing].mean()) if missing.any() else float(y.mean())
        x, y = x[~missing], y[~missing]
        if x.size == 0:
            self.x_, self.y_ = np.zeros(1), np.full(1, self.missing_)
            rate = min(max(self.missing_, 1e-12), 1 - 1e-12)
            self.slope_, self.intercept_ = 0.0, float(np.log(rate / (1 - rate)))
        elif self.kind == "isotonic":
            self._fit_isotonic(x, y)
        else:
            self._fit_platt(x, y)
        return self

    def _fit_isotonic(self, x: F64, y: F64) -> None:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(x, y)
        # The step thresholds are the whole model; predict interpolates between them as sklearn
        # does, so a calibrator read back from JSON answers exactly like the fitted one.
        self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)

    def _fit_platt(self, x: F64, y: F64) -> None:
        from scipy.optimize import minimize

        # Platt's smoothed targets keep the slope finite on separable data.
        n_pos = y.sum()
        n_neg = y.size - n_pos
        target = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        center, scale = float(x.mean()), float(x.std()) or 1.0
        z = (x - center) / scale

        def loss(params: F64) -> tuple[float, F64]:
            margin = params[0] * z + params[1]
            # log(1 + e^m) - t * m, written stably; gradient (sigmoid(m) - t) * (z, 1)
            value = np.logaddexp(0.0, margin) - target * margin
            residual = sigmoid(margin) - target
            grad = np.array([(residual * z).mean(), residual.mean()])
            return float(value.mean()), grad

        a, b = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B").x
        self.slope_ = float(a / scale)
        self.intercept_ = float(b - a * center / scale)

    def predict(self, scores: npt.ArrayLike) -> F64:
        x = np.asarray(scores, dtype=np.float64)
        missing = np.isnan(x)
        filled = np.where(missing, 0.0, x)
        if self.kind == "isotonic":
            prob = np.interp(filled, self.x_, self.y_)
        else:
            prob = sigmoid(self.slope_ * filled + self.intercept_)
        out: F64 = np.where(missing, self.missing_, prob)
        return out

    # -- persistence: plain JSON-able numbers, no pickle --------------------------------------
    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"kind": self.kind, "missing": self.missing_}
        if self.kind == "isotonic":
            state.update(x=self.x_.tolist(), y=self.y_.tolist())
        else:
            state.update(slope=self.slope_, intercept=self.intercept_)
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Calibrator:
        out = cls(state["kind"])
        out.missing_ = float(state["missing"])
        if out.kind == "isotonic":
            out.x_ = np.asarray(state["x"], dtype=np.float64)
            out.y_ = np.asarray(state["y"], dtype=np.float64)
        else:
            out.slope_, out.intercept_ = float(state["slope"]), float(state["intercept"])
        return out


# -- reliability -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reliability:
    """Equal-width probability bins: mean predicted, observed rate and pairs per bin."""

    edges: F64  # bins + 1 edges over [0, 1]
    mean_predicted: F64  # NaN for an empty bin
    observed: F64
    count: npt.NDArray[np.int64]

    @property
    def ece(self) -> float:
        """Expected calibration error: |predicted - observed| averaged over bins by count."""
        total = int(self.count.sum())
        if total == 0:
            return float("nan")
        gap = np.abs(self.mean_predicted - self.observed)
        return float(np.nansum(gap * self.count) / total)

    def rows(self) -> list[tuple[float, float, float, float, int]]:
        """(low, high, mean predicted, observed, count) per bin."""
        return [
            (float(lo), float(hi), float(p), float(o), int(n))
            for lo, hi, p, o, n in zip(
                self.edges[:-1],
                self.edges[1:],
                self.mean_predicted,
                self.observed,
                self.count,
                strict=True,
            )
        ]


def reliability(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> Reliability:
    """Bin predictions into `bins` bins: equal-width over [0, 1] (1.0 falls in the last), or
    equal-mass ("quantile": when nearly all pairs are rare positives, equal-width bins put them
    all in the first bin and the ECE says little about how they are ordered)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = (np.asarray(labels).ravel() > 0).astype(np.float64)
    if p.shape != y.shape:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} differ in length")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    if strategy == "quantile" and p.size:
        edges = np.quantile(p, np.linspace(0.0, 1.0, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=p, minlength=bins) / count
        observed = np.bincount(which, weights=y, minlength=bins) / count
    return Reliability(edges, mean_p, observed, count)


def expected_calibration_error(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> float:
    return reliability(probabilities, labels, bins, strategy).ece


# -- honest ranker scores ----------------------------------------------------------------------
def user_folds(training: TrainingSet, folds: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Fold of every candidate pair, drawn per user: a user's requests share one fold."""
    if folds < 2:
        raise ValueError(f"out-of-fold scores need folds >= 2, got {folds}")
    users, user_of_row = np.unique(training.users, return_inverse=True)
    if users.size < folds:  # a DataError: the CLI shows it as one line, not a traceback
        raise DataError(
            f"{users.size} validation user(s) cannot fill {folds} folds of out-of-fold ranker "
            f"scores; need at least {folds} users with validation targets: give more users, or "
            "fewer folds (ensemble.calibration_folds, at least 2) or no ensemble.calibration"
        )
    order = np.random.default_rng(seed).permutation(users.size)
    fold_of_user = np.empty(users.size, dtype=np.int64)
    fold_of_user[order] = np.arange(users.size) % folds
    out: npt.NDArray[np.int64] = fold_of_user[user_of_row][training.candidates.rows]
    return out


def ranker_probability(scores: npt.ArrayLike, ranker: MetaRanker) -> F64:
    """The ranker's own reading of its score as a probability, before any calibration:
    LightGBM's binary objective already returns sigmoid(margin); other rankers get a sigmoid."""
    raw = np.asarray(scores, dtype=np.float64)
    if ranker.kind_ == "lightgbm" and ranker.config.objective == "binary":
        return raw
    return sigmoid(raw)


def out_of_fold_scores(
    training: TrainingSet, config: EnsembleConfig, folds: int = 3, seed: int = 0
) -> tuple[F64, F64, npt.NDArray[np.int64]]:
    """(raw scores, their uncalibrated probabilities, fold) for every training pair, each from a
    ranker trained as Ensemble.fit trains one, but without the pair's fold of users."""
    from recsemble.ranking.trainingset import (
        _groups_with_positives,
        _nonzero_groups,
        _sample_negatives,
    )

    fold = user_folds(training, folds, seed)
    trainable = _groups_with_positives(training) & _sample_negatives(
        training, config.negatives_per_user, config.ranker.seed
    )
    values = training.features.values
    scores = np.empty(fold.size, dtype=np.float64)
    probabilities = np.empty(fold.size, dtype=np.float64)
    for f in range(folds):
        keep = trainable & (fold != f)
        ranker = MetaRanker(config.ranker).fit(
            values[keep], training.labels[keep], _nonzero_groups(training.candidates.take(keep))
        )
        held = fold == f
        scores[held] = ranker.predict(values[held])
        probabilities[held] = ranker_probability(scores[held], ranker)
    return scores, probabilities, fold


@dataclass(frozen=True)
class RankerCalibration:
    """A calibrator for the ranker's scores and the evidence that it calibrates."""

    calibrator: Calibrator  # fitted on every out-of-fold score
    raw: F64  # per training pair: the ranker's own probability, out of fold
    calibrated: F64  # per training pair, cross-fitted: by a calibrator not fitted on its fold
    before: Reliability  # of raw
    after: Reliability  # of calibrated


def calibrate_ranker(
    training: TrainingSet,
    config: EnsembleConfig,
    kind: CalibratorKind = "isotonic",
    folds: int = 3,
    bins: int = 10,
) -> RankerCalibration:
    """Fit a calibrator on honest ranker scores and measure ECE before and after it."""
    scores, probabilities, fold = out_of_fold_scores(training, config, folds)
    labels = training.labels
    after = np.empty_like(scores)
    for f in range(folds):
        held = fold == f
        after[held] = Calibrator(kind).fit(scores[~held], labels[~held]).predict(scores[held])
    return RankerCalibration(
        Calibrator(kind).fit(scores, labels),
        probabilities,
        after,
        reliability(probabilities, labels, bins),
        reliability(after, labels, bins),
    )


# -- members -----------------------------------------------------------------------------------
def member_column(cands: Candidates, member: int, column: MemberColumn) -> F32:
    """One member's column of the candidates, oriented so that higher means better."""
    if column == "rank":
        out: F32 = -cands.ranks[:, member]
        return out
    return cands.zscores[:, member] if column == "z" else cands.scores[:, member]


class MemberCalibrators:
    """One calibrator per member: its score (or rank) column -> P(interaction)."""

    def __init__(self, column: MemberColumn = "rank", kind: CalibratorKind = "isotonic") -> None:
        self.column = column
        self.kind = kind

    def fit(self, cands: Candidates, labels: npt.ArrayLike) -> Self:
        y = np.asarray(labels)
        self.members_ = cands.members
        self.calibrators_ = [
            Calibrator(self.kind).fit(member_column(cands, m, self.column), y)
            for m in range(len(cands.members))
        ]
        return self

    def predict(self, cands: Candidates) -> F64:
        """(pairs x members) probabilities; members must match those fitted, in order."""
        if cands.members != self.members_:
            raise ValueError(f"candidates of {cands.members}, calibrators of {self.members_}")
        cols = [
            cal.predict(member_column(cands, m, self.column))
            for m, cal in enumerate(self.calibrators_)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((cands.size, 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "members": list(self.members_),
            "calibrators": [c.to_dict() for c in self.calibrators_],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MemberCalibrators:
        out = cls(state["column"], state["kind"])
        out.members_ = tuple(state["members"])
        out.calibrators_ = [Calibrator.from_dict(c) for c in state["calibrators"]]
        return out
