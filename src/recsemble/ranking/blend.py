"""Blend: a cheap alternative to the tree ranker, a weighted sum of calibrated member votes.

Each member's rank (or score) is first mapped to P(interaction) by its own calibrator, so that
the members speak one language; the weights then come from a logistic regression of the
validation targets on those probabilities, constrained to be non-negative (a member can add
evidence for a candidate, never count against it). Scoring is one small matrix product.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from recsemble.ranking.calibration import (
    CalibratorKind,
    MemberCalibrators,
    MemberColumn,
    sigmoid,
)
from recsemble.ranking.candidates import Candidates

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def nonnegative_logistic(
    features: npt.ArrayLike, labels: npt.ArrayLike, l2: float = 1e-6
) -> tuple[F64, float]:
    """(weights >= 0, intercept) minimising the mean log loss (+ l2 * |w|^2) of sigmoid(Xw + b)."""
    from scipy.optimize import minimize

    x = np.asarray(features, dtype=np.float64)
    y = (np.asarray(labels).ravel() > 0).astype(np.float64)
    if x.ndim != 2 or x.shape[0] != y.size or y.size == 0:
        raise ValueError(f"need (n, m) features and n labels, got {x.shape} and {y.shape}")
    # Dividing a column by a positive constant keeps the sign constraint and evens the scales.
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = x / scale
    rate = min(max(float(y.mean()), 1e-6), 1 - 1e-6)

    def loss(params: F64) -> tuple[float, F64]:
        w, b = params[:-1], params[-1]
        margin = z @ w + b
        residual = sigmoid(margin) - y
        value = float((np.logaddexp(0.0, margin) - y * margin).mean() + l2 * (w @ w))
        grad = np.append(z.T @ residual / y.size + 2 * l2 * w, residual.mean())
        return value, grad

    start = np.append(np.zeros(x.shape[1]), np.log(rate / (1 - rate)))
    bounds = [(0.0, None)] * x.shape[1] + [(None, None)]
    params = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
    weights: F64 = np.maximum(params[:-1], 0.0) / scale
    return weights, float(params[-1])


class Blend:
    """fit(candidates, labels) -> self; rank(candidates) -> one score per pair (higher first)."""

    def __init__(self, column: MemberColumn = "rank", kind: CalibratorKind = "isotonic") -> None:
        self.column = column
        self.kind = kind

    def fit(self, cands: Candidates, labels: npt.ArrayLike) -> Self:
        self.calibrators_ = MemberCalibrators(self.column, self.kind).fit(cands, labels)
        self.weights_, self.intercept_ = nonnegative_logistic(
            self.calibrators_.predict(cands), labels
        )
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Weight per member label (on its calibrated probability)."""
        return dict(zip(self.calibrators_.members_, self.weights_.tolist(), strict=True))

    def rank(self, cands: Candidates) -> F32:
        """The blend's margin: sum of weight x calibrated probability, plus the intercept."""
        margin = self.calibrators_.predict(cands) @ self.weights_ + self.intercept_
        return margin.astype(np.float32)

    def predict_proba(self, cands: Candidates) -> F64:
        return sigmoid(self.rank(cands))

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibrators": self.calibrators_.to_dict(),
            "weights": self.weights_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Blend:
        calibrators = MemberCalibrators.from_dict(state["calibrators"])
        out = cls(calibrators.column, calibrators.kind)
        out.calibrators_ = calibrators
        out.weights_ = np.asarray(state["weights"], dtype=np.float64)
        out.intercept_ = float(state["intercept"])
        return out
