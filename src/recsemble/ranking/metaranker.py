"""MetaRanker: learns the order of candidates from their features and validation targets.

LightGBM LambdaRank by default (trees handle the members' missing scores natively); a logistic
regression over standardised features is the fallback when LightGBM is absent or asked for.
The number of boosting rounds is chosen by early stopping on a held-out share of the training
users, then the model is refitted on all of them with that many rounds.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recsemble.strict import StrictConfig
from recsemble.system import usable_cpus

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class RankerConfig(StrictConfig):
    """The meta-ranker's settings."""

    kind: Literal["lightgbm", "logistic"] = "lightgbm"
    objective: Literal["lambdarank", "binary"] = "binary"
    max_rounds: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    # 0 = one thread per 100k training pairs up to the machine's cores: OpenMP threads that
    # spin on small data (or on a busy machine) cost far more than they save.
    num_threads: int = Field(0, ge=0)
    early_stopping_share: float = Field(0.2, ge=0, lt=1)  # of users held out to pick rounds
    seed: int = 0


#: Prediction rows per OpenMP thread: below this a second thread costs more than it saves
#: (one request's ~200 candidates take ~1.4 ms on one thread, ~0.8 ms on two).
_ROWS_PER_THREAD = 100


def lightgbm_available() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


class MetaRanker:
    """fit(features, labels, group sizes) -> self; predict(features) -> scores (higher first)."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def fit(self, features: F32, labels: npt.NDArray[Any], groups: I64) -> MetaRanker:
        if features.shape[0] != labels.shape[0] or int(groups.sum()) != features.shape[0]:
            raise ValueError("features, labels and group sizes disagree on the number of pairs")
        self.kind_ = self.config.kind if lightgbm_available() else "logistic"
        if self.kind_ == "lightgbm":
            self.rounds_ = self._pick_rounds(features, labels, groups)
            self.booster_ = self._train_lightgbm(features, labels, groups, self.rounds_)
        else:
            self._fit_logistic(features, labels)
        return self

    def predict(self, features: F32) -> F32:
        if features.shape[0] == 0:
            return np.zeros(0, np.float32)
        if self.kind_ == "lightgbm":
            threads = min(usable_cpus(), max(1, features.shape[0] // _ROWS_PER_THREAD))
            return np.asarray(self.booster_.predict(features, num_threads=threads), np.float32)
        filled = np.where(np.isnan(features), self.fill_, features)
        z = (filled - self.mean_) / self.scale_
        return np.asarray(z @ self.coef_ + self.intercept_, dtype=np.float32)

    # -- lightgbm ---------------------------------------------------------------------------
    def _params(self, n_rows: int) -> dict[str, Any]:
        c = self.config
        threads = c.num_threads or min(usable_cpus(), max(1, n_rows // 100_000))
        params: dict[str, Any] = {
            "objective": c.objective,
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_child_samples": c.min_child_samples,
            "feature_fraction": c.feature_fraction,
            "bagging_seed": c.seed,
            "feature_fraction_seed": c.seed,
            "seed": c.seed,
            "deterministic": True,
            "num_threads": threads,
            "verbosity": -1,
        }
        if c.objective == "lambdarank":
            params.update(lambdarank_truncation_level=20, eval_at=[10], metric="ndcg")
        else:  # log loss is a far smoother stopping signal than NDCG on a few hundred users
            params.update(metric="binary_logloss")
        return params

    def _pick_rounds(self, features: F32, labels: npt.NDArray[Any], groups: I64) -> int:
        share = self.config.early_stopping_share
        if share == 0 or groups.size < 10:
            return self.config.max_rounds
        import lightgbm as lgb

        rng = np.random.default_rng(self.config.seed)
        held = rng.random(groups.size) < share
        row_held = np.repeat(held, groups)
        train = lgb.Dataset(features[~row_held], labels[~row_held], group=groups[~held])
        valid = lgb.Dataset(features[row_held], labels[row_held], group=groups[held])
        booster = lgb.train(
            self._params(int(features.shape[0])),
            train,
            num_boost_round=self.config.max_rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        return max(1, int(booster.best_iteration or self.config.max_rounds))

    def _train_lightgbm(
        self, features: F32, labels: npt.NDArray[Any], groups: I64, rounds: int
    ) -> Any:
        import lightgbm as lgb

        data = lgb.Dataset(features, labels, group=groups)
        return lgb.train(self._params(int(features.shape[0])), data, num_boost_round=rounds)

    # -- logistic fallback -----------------------------------------------------------------
    def _fit_logistic(self, features: F32, labels: npt.NDArray[Any]) -> None:
        from sklearn.linear_model import LogisticRegression

        with np.errstate(all="ignore"):
            fill = np.nanmin(features, axis=0) - 1.0 if features.size else np.zeros(0)
        self.fill_ = np.where(np.isfinite(fill), fill, 0.0).astype(np.float32)
        filled = np.where(np.isnan(features), self.fill_, features)
        self.mean_ = filled.mean(axis=0).astype(np.float32)
        self.scale_ = (filled.std(axis=0) + 1e-6).astype(np.float32)
        model = LogisticRegression(C=1.0, max_iter=500, random_state=self.config.seed)
        model.fit((filled - self.mean_) / self.scale_, labels > 0)
        self.coef_ = model.coef_.ravel().astype(np.float32)
        self.intercept_ = float(model.intercept_[0])

    # -- persistence ---------------------------------------------------------------------------
    def to_text(self) -> str:
        """LightGBM's own text format, or the logistic weights as JSON."""
        if self.kind_ == "lightgbm":
            text: str = self.booster_.model_to_string()
            return text
        return json.dumps(
            {
                "kind": "logistic",
                "fill": self.fill_.tolist(),
                "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(),
                "intercept": self.intercept_,
            }
        )

    @classmethod
    def from_text(cls, text: str, config: RankerConfig) -> MetaRanker:
        ranker = cls(config)
        if text.lstrip().startswith("{"):
            state = json.loads(text)
            ranker.kind_ = "logistic"
            for key in ("fill", "mean", "scale", "coef"):
                setattr(ranker, f"{key}_", np.asarray(state[key], np.float32))
            ranker.intercept_ = float(state["intercept"])
        else:
            import lightgbm as lgb

            ranker.kind_ = "lightgbm"
            ranker.booster_ = lgb.Booster(model_str=text)
        return ranker

    def feature_importance(self) -> F32:
        """Total gain per feature (trees) or |coefficient| (logistic)."""
        if self.kind_ == "lightgbm":
            return np.asarray(self.booster_.feature_importance("gain"), np.float32)
        out: F32 = np.abs(self.coef_)
        return out
