"""Shared plumbing of the PyTorch members (twotower, sasrec): importing torch with a clear
error, the device (CUDA when present, else CPU), seeding, mixed precision, early stopping on a
validation window, and state dicts saved with torch and read back with `weights_only=True`.

torch is an optional extra (`pip install torch==2.13.0` for the CPU build), imported only when a
neural member is built, so the rest of recsemble never pays for it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.errors import ConfigError
from recsemble.generators.history import Histories

if TYPE_CHECKING:
    import torch

    from recsemble.data.dataset import Dataset

Device = Literal["auto", "cpu", "cuda"]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]


def require_torch(member: str) -> None:
    """Raise a ConfigError naming the fix when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            f"the {member} member needs PyTorch: pip install torch==2.13.0 (the CPU build; "
            "or `pip install recsemble[torch]` where a CUDA build is wanted)"
        )


def torch_device(device: Device, member: str) -> torch.device:
    """auto: CUDA when torch sees a GPU, else the CPU; cuda without one is an error."""
    require_torch(member)
    import torch

    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        raise ConfigError(f"{member}: device='cuda' was requested but torch sees no CUDA GPU")
    return torch.device("cuda" if has_cuda and device != "cpu" else "cpu")


def serving_device(device: Device, member: str) -> torch.device:
    """Where a loaded model scores: as torch_device, but `cuda` without a GPU is the CPU.

    `device` says where the model was trained; a model trained on a GPU machine is commonly
    served on CPU ones, and its state dict is the same tensors there.
    """
    return torch_device("auto" if device == "cuda" else device, member)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator (weight init) and return a generator for shuffling."""
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA (bfloat16), full precision on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_state_dict(module: torch.nn.Module, path: Path) -> None:
    import torch

    state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    torch.save(state, path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: `weights_only=True` refuses any pickled object in the file."""
    import torch

    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


class EarlyStopping:
    """Keeps the best module state by a validation score (higher is better); `stop` once
    `patience` epochs passed without an improvement of more than `min_delta`."""

    def __init__(self, patience: int, min_delta: float = 1e-4) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_score = -np.inf
        self.best_epoch = -1
        self.best_state: dict[str, Any] | None = None
        self._epoch = -1

    def update(self, score: float, module: torch.nn.Module) -> bool:
        """Record the epoch's score; True when it is the best so far."""
        self._epoch += 1
        if score > self.best_score + self.min_delta:
            self.best_score, self.best_epoch = score, self._epoch
            self.best_state = copy.deepcopy(module.state_dict())
            return True
        return False

    @property
    def stop(self) -> bool:
        return self._epoch - self.best_epoch >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


@dataclass(frozen=True)
class ValidationWindow:
    """The latest interactions of a sample of users, held out of fitting to choose the number
    of epochs: the same temporal-user rule as the evaluation protocol, one level down."""

    fit_part: Dataset
    users: I32  # user idx with held-out interactions (a seeded sample)
    truth: sp.csr_array  # (len(users), n_items) binary held-out interactions
    at: npt.NDArray[np.int64]  # per user: the moment of the recommendation

    @classmethod
    def cut(
        cls, dataset: Dataset, fraction: float = 0.1, max_users: int = 2000, seed: int = 0
    ) -> ValidationWindow | None:
        """None when the data are too small to hold anything out, or when what is left to fit
        on has no user with two events (no next item to learn from: with one held out of every
        two-event history, a window would choose zero epochs and leave the member untrained)."""
        from recsemble.evaluation.protocol import split

        if dataset.n_interactions < 20:
            return None
        window = split(dataset, "temporal-user", fraction)
        users = window.evaluated_users
        if users.size == 0 or not (window.train.user_history_lengths >= 2).any():
            return None
        if users.size > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        truth = sp.csr_array(window.test.user_item_matrix("binary")[users])
        return cls(window.train, users.astype(np.int32), truth, window.reference_time[users])

    def ndcg(self, top_items: I32, k: int = 10) -> float:
        """Mean NDCG@k of `top_items` (one row per user of the window, -1 padded)."""
        from recsemble.evaluation.metrics import CatalogStats, compute_metrics

        stats = CatalogStats.from_train(self.fit_part.user_item_matrix("binary"))
        return float(compute_metrics(top_items[:, :k], self.truth, k, stats).summary()[f"ndcg@{k}"])


def batches(n: int, size: int, generator: torch.Generator | None = None) -> Iterator[Any]:
    """Index tensors of shuffled (with `generator`) or ordered mini-batches over range(n)."""
    import torch

    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for lo in range(0, n, size):
        yield order[lo : lo + size]


def shuffle_ties(histories: Histories, rng: np.random.Generator) -> Histories:
    """The same histories with simultaneous events (same row, same timestamp) in random order.

    Histories break ties by item idx; in MovieLens half the events share their second with the
    previous one, and training on that order would teach the catalog's numbering, not taste
    (the protocol: a model must not read an order into simultaneous events).
    """
    order = np.lexsort(
        (rng.random(histories.items.size), histories.timestamps, histories.row_of_event)
    )
    return Histories(
        histories.indptr,
        histories.items[order],
        histories.timestamps[order],
        histories.weights[order],
        histories.n_items,
    )


def _nothing() -> None:
    return None


class EpochSteps:
    """Progress for the torch members (SteppedFit, evaluation/runner.py): one step per
    training epoch, so `evaluate` and `train` show counts and an ETA, not a 0/1 bar for
    minutes. The member's `fit_steps` is an upper bound (early stopping ends the bar early)."""

    def report_fit(self, start: Callable[[str], None], done: Callable[[], None]) -> None:
        self._epoch_done = done

    def epoch_done(self) -> None:
        getattr(self, "_epoch_done", _nothing)()


def epoch_bound(max_epochs: int, validation_fraction: float, refit: bool) -> int:
    """At most max_epochs on the validation window, as many again for the refit on all."""
    return max_epochs * (2 if validation_fraction > 0 and refit else 1)
