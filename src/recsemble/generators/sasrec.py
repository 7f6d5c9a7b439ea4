"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Each user's items in time order are read by a causal transformer (item embeddings plus learned
position embeddings over the last `max_len` items, pre-LN self-attention blocks, dropout); the
output at the last position, dotted with the same item embeddings (tied weights), scores the
whole catalog in one matrix product. Training predicts the next item at every position, with
full-softmax cross-entropy (`loss="ce"`) or the paper's binary cross-entropy against one uniformly
sampled negative per position (`loss="bce"`).

At request time the user's CURRENT history (the `histories` passed in, else the fitted one) is
encoded, so new events count at once and anonymous sessions are answered without a refit. An
empty history gets the popularity fallback row: the fitted share of users per item, in [0, 1].

Fitting cuts a validation window (the latest interactions of a user sample, as the temporal-user
protocol does), trains on the rest with early stopping on its NDCG@10, then by default refits
from the same seed on ALL the data for the best number of epochs: under a temporal split the
held-out latest events are the most telling ones for the next item, so they are not left out.
Events at the same timestamp are put in a fresh random order every epoch (see `shuffle_ties`).

With `horizon` h > 1 every position is taught the next h items, not only the next one: the
protocol tests on a user's next 20% of events, so the model should rank what comes soon, not only
what comes next.

Measured on ml-100k, temporal-user, test NDCG@10 (ease-recent 0.244, ials 0.225): full-softmax
CE 0.231-0.234, BCE with one negative 0.193 (cheaper epochs, but more of them and lower), so CE
is the default. With patience 20 (5 stopped on an early plateau of the validation curve), chosen
on the validation window: horizon 1, test 0.2458 on 2 CPU cores, 0.2477 on an H100
(BENCHMARKS.md; horizon 4: 0.2348).

Very short histories sit next to the padding at positions that long training windows rarely
show that way: on the tests' cycle data, 2-item histories were mispredicted where
5-item ones were right.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.generators import neural
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig
from recsemble.generators.history import Histories
from recsemble.generators.neural import shuffle_ties
from recsemble.generators.topk import top_similar, topk_rows
from recsemble.types import TopK

if TYPE_CHECKING:
    import torch

Arrays = dict[str, npt.NDArray[Any]]
I64 = npt.NDArray[np.int64]
_STATE_FILE = "sasrec.pt"
#: Sequences per forward pass when scoring (bounds the activations, not the result).
_SCORE_BATCH = 1024


class SASRecConfig(GeneratorConfig):
    dim: int = Field(64, ge=1, le=4096)  # embedding width (a multiple of n_heads)
    n_layers: int = Field(2, ge=1, le=24)
    n_heads: int = Field(1, ge=1, le=64)
    max_len: int = Field(50, ge=1, le=4096)  # the latest items of a history that are read
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)  # sequences (windows of max_len items) per step
    max_epochs: int = Field(200, ge=1)
    # Epochs without a better validation NDCG@10 before stopping. 5 stopped on an early plateau of
    # the validation curve on MovieLens (ml-latest-small test NDCG@10 0.077 against 0.128 at 20).
    patience: int = Field(20, ge=1)
    loss: Literal["ce", "bce"] = "ce"  # full-softmax cross-entropy, or BCE with one negative
    # Targets per position: the next `horizon` items (CE: mean over them; BCE: one drawn at random).
    # The protocol tests on a user's next 20% of events, not only the next one.
    horizon: int = Field(1, ge=1, le=256)
    validation_fraction: float = Field(0.2, gt=0, lt=1)  # latest share of a user's events held out
    refit: bool = True  # after early stopping: retrain on all data (True) or keep the best state
    seed: int = Field(0, ge=0)
    device: neural.Device = "auto"

    @model_validator(mode="after")
    def _heads_split_the_width(self) -> Self:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of n_heads ({self.n_heads})")
        return self


def last_items(histories: Histories, max_len: int) -> I64:
    """(rows, max_len) item idx + 1 of each history's latest events, left-padded with 0."""
    ends = histories.indptr[1:]
    positions = ends[:, None] - max_len + np.arange(max_len)
    real = positions >= histories.indptr[:-1, None]
    if histories.items.size == 0:
        return np.zeros(real.shape, dtype=np.int64)
    taken = histories.items[np.where(real, positions, 0)].astype(np.int64) + 1
    return np.where(real, taken, 0)


def training_windows(histories: Histories, max_len: int, horizon: int = 1) -> tuple[I64, I64]:
    """Inputs (windows, max_len) and targets (windows, max_len, horizon): item idx + 1, 0 = none.

    A history of n events gives n - 1 (input, next) pairs, cut from its end into windows of
    max_len, so long histories are used whole instead of only their last max_len items. The
    targets of a position are the next `horizon` items of the history (fewer near its end).
    """
    starts, ends = histories.indptr[:-1], histories.indptr[1:]
    pairs = np.maximum(ends - starts - 1, 0)
    per_user = (pairs + max_len - 1) // max_len
    owner = np.repeat(np.arange(per_user.size), per_user)
    step = np.arange(owner.size) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    last_target = ends[owner] - 1 - step * max_len
    targets_at = last_target[:, None] - max_len + 1 + np.arange(max_len)
    real = targets_at - 1 >= starts[owner][:, None]
    items = histories.items.astype(np.int64) + 1
    if items.size == 0:
        empty = np.zeros((0, max_len), dtype=np.int64)
        return empty, empty[..., None].repeat(horizon, axis=2)
    inputs = np.where(real, items[np.where(real, targets_at - 1, 0)], 0)
    ahead = targets_at[..., None] + np.arange(horizon)
    valid = real[..., None] & (ahead < ends[owner][:, None, None])
    return inputs, np.where(valid, items[np.where(valid, ahead, 0)], 0)


def build_network(n_items: int, config: SASRecConfig) -> torch.nn.ModuleDict:
    """Item (row 0 = padding) and position embeddings, then pre-LN causal attention blocks."""
    from torch import nn

    block = nn.TransformerEncoderLayer(
        d_model=config.dim,
        nhead=config.n_heads,
        dim_feedforward=config.dim,  # the paper's point-wise feed-forward keeps the width
        dropout=config.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    network = nn.ModuleDict(
        {
            "item_embedding": nn.Embedding(n_items + 1, config.dim, padding_idx=0),
            "position_embedding": nn.Embedding(config.max_len, config.dim),
            "dropout": nn.Dropout(config.dropout),
            "encoder": nn.TransformerEncoder(
                block, config.n_layers, norm=nn.LayerNorm(config.dim), enable_nested_tensor=False
            ),
        }
    )
    for name in ("item_embedding", "position_embedding"):
        nn.init.normal_(cast(nn.Embedding, network[name]).weight, std=0.02)  # logits start near 0
    item_table(network).data[0] = 0.0
    return network


def item_table(network: torch.nn.ModuleDict) -> torch.Tensor:
    """(n_items + 1, dim) item embeddings, input and output alike; row 0 is the padding."""
    from torch import nn

    return cast(nn.Embedding, network["item_embedding"]).weight


def encode(network: torch.nn.ModuleDict, sequences: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, max_len, dim) outputs: position t has read items 0..t of its sequence.

    A query attends to the real (non-padding) items at or before it, and always to itself, so
    padded positions never see an empty row (which would turn the softmax into NaN).
    """
    import torch

    length = sequences.shape[1]
    positions = torch.arange(length, device=sequences.device)
    hidden = network["item_embedding"](sequences) + network["position_embedding"](positions)[None]
    real = sequences > 0
    causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
    itself = torch.eye(length, dtype=torch.bool, device=sequences.device)
    allowed = (causal & real[:, None, :]) | itself
    blocked = (~allowed).repeat_interleave(n_heads, dim=0)  # (batch * heads, query, key)
    out: torch.Tensor = network["encoder"](network["dropout"](hidden), mask=blocked)
    return out


def next_item_loss(
    network: torch.nn.ModuleDict,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: SASRecConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mean loss of predicting `targets` (batch, len, horizon; idx + 1) at every real position."""
    import torch
    import torch.nn.functional as F

    real = targets[..., 0] > 0
    hidden = encode(network, inputs, config.n_heads)[real]
    table = item_table(network)
    wanted = targets[real]  # (positions, horizon), 0 past the history's end
    present = wanted > 0
    if config.loss == "ce":
        log_p = F.log_softmax((hidden @ table[1:].T).float(), dim=-1)
        picked = log_p.gather(1, (wanted - 1).clamp(min=0)) * present
        return -(picked.sum(1) / present.sum(1)).mean()  # each position weighs the same
    draw = torch.rand(wanted.shape, generator=generator).to(wanted.device) * present
    wanted = wanted.gather(1, draw.argmax(1, keepdim=True)).squeeze(1)  # one target at random
    negatives = torch.randint(1, int(table.shape[0]), wanted.shape, generator=generator)
    positive = (hidden * table[wanted]).sum(-1)
    negative = (hidden * table[negatives.to(wanted.device)]).sum(-1)
    logits = torch.cat([positive, negative])
    labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    return F.binary_cross_entropy_with_logits(logits, labels)


@dataclass
class _Validation:
    """The validation window, its users' fit-part histories and the early stopping state."""

    window: neural.ValidationWindow
    stopping: neural.EarlyStopping
    histories: Histories = field(init=False)

    def __post_init__(self) -> None:
        self.histories = Histories.from_dataset(self.window.fit_part).rows(self.window.users)


class SASRec(neural.EpochSteps, CandidateGenerator):
    """A causal transformer over each history's latest items; scores from the current history."""

    name: ClassVar[str] = "sasrec"
    Config: ClassVar[type[GeneratorConfig]] = SASRecConfig
    config: SASRecConfig

    # -- fitting ------------------------------------------------------------------------
    @property
    def fit_steps(self) -> int:
        cfg = self.config
        return neural.epoch_bound(cfg.max_epochs, cfg.validation_fraction, cfg.refit)

    def _fit(self, dataset: Dataset) -> None:
        cfg = self.config
        self.device_ = neural.torch_device(cfg.device, self.name)
        counts = np.asarray(dataset.user_item_matrix("binary").sum(axis=0)).ravel()
        self.popularity_ = (counts / max(1, dataset.n_users)).astype(np.float32)
        self.epoch_seconds_: list[float] = []
        self.validation_ndcg_: list[float] = []
        self.best_epochs_: int | None = None  # chosen on the validation window, if one was cut
        epochs = cfg.max_epochs
        window = neural.ValidationWindow.cut(dataset, cfg.validation_fraction, seed=cfg.seed)
        if window is not None:
            validation = _Validation(window, neural.EarlyStopping(cfg.patience))
            self.network_ = self._train(window.fit_part, cfg.max_epochs, validation)
            epochs = self.best_epochs_ = validation.stopping.best_epoch + 1
            if not cfg.refit:
                validation.stopping.restore(self.network_)
                return
        self.network_ = self._train(dataset, epochs)

    def _train(
        self, dataset: Dataset, epochs: int, validation: _Validation | None = None
    ) -> torch.nn.ModuleDict:
        """A network trained from the seed for `epochs`, stopping early on `validation`."""
        import torch

        generator = neural.seed_everything(self.config.seed)
        network = build_network(dataset.n_items, self.config).to(self.device_)
        histories = Histories.from_dataset(dataset)
        rng = np.random.default_rng(self.config.seed)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        for _ in range(epochs if histories.items.size else 0):
            started = time.perf_counter()
            windows = training_windows(
                shuffle_ties(histories, rng), self.config.max_len, self.config.horizon
            )
            inputs, targets = (torch.from_numpy(part) for part in windows)
            self._epoch(network, optimizer, inputs, targets, generator)
            self.epoch_seconds_.append(time.perf_counter() - started)
            self.epoch_done()
            if validation is not None:
                self.validation_ndcg_.append(self._window_ndcg(network, validation))
                validation.stopping.update(self.validation_ndcg_[-1], network)
                if validation.stopping.stop:
                    break
        network.eval()
        return network

    def _epoch(
        self,
        network: torch.nn.ModuleDict,
        optimizer: torch.optim.Optimizer,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        network.train()
        for batch in neural.batches(inputs.shape[0], self.config.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            with neural.autocast(self.device_):
                loss = next_item_loss(
                    network,
                    inputs[batch].to(self.device_),
                    targets[batch].to(self.device_),
                    self.config,
                    generator,
                )
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()

    def _window_ndcg(self, network: torch.nn.ModuleDict, validation: _Validation) -> float:
        """NDCG@10 on the window: its users scored from their fit-part histories."""
        network.eval()
        scores = self._network_scores(network, validation.histories)
        validation.histories.mask_seen(scores)
        return validation.window.ndcg(topk_rows(scores, 10)[0])

    # -- answering ----------------------------------------------------------------------
    def _network_scores(
        self, network: torch.nn.ModuleDict, histories: Histories
    ) -> npt.NDArray[np.float32]:
        """Dense (rows, n_items) scores: last-position output times the item embeddings."""
        import torch

        sequences = torch.from_numpy(last_items(histories, self.config.max_len))
        table = item_table(network)[1:]
        out = np.empty((histories.n_rows, table.shape[0]), dtype=np.float32)
        with torch.inference_mode(), neural.autocast(self.device_):
            for lo in range(0, histories.n_rows, _SCORE_BATCH):
                chunk = sequences[lo : lo + _SCORE_BATCH].to(self.device_)
                last = encode(network, chunk, self.config.n_heads)[:, -1]
                out[lo : lo + chunk.shape[0]] = (last @ table.T).float().cpu().numpy()
        return out

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        scores = self._network_scores(self.network_, histories)
        scores[histories.lengths == 0] = self.popularity_  # nothing to read: popularity
        return scores

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The k items with the highest cosine similarity of their (input = output) embeddings."""
        item_arr = self._similar_request(items, k)
        table = item_table(self.network_)[1:].detach().float().cpu().numpy()
        norms = np.linalg.norm(table, axis=1, keepdims=True)
        unit = np.asarray(table / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        return top_similar(item_arr, np.asarray(unit[item_arr] @ unit.T, dtype=np.float32), k)

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> Arrays:
        return {"popularity": self.popularity_}

    def _set_state(self, state: Arrays) -> None:
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)

    def _save_files(self, folder: Path) -> list[str]:
        neural.save_state_dict(self.network_, folder / _STATE_FILE)
        return [_STATE_FILE]

    def _load_files(self, folder: Path) -> None:
        """Tensors only (weights_only=True): a file holding any other object is refused."""
        path = folder / _STATE_FILE
        self.device_ = neural.serving_device(self.config.device, self.name)
        network = build_network(self.n_items_, self.config)
        try:
            network.load_state_dict(neural.load_state_dict(path))
        except (pickle.UnpicklingError, RuntimeError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise DataError(
                f"not a SASRec state dict of tensors ({type(exc).__name__}: {first_line})",
                source=str(path),
            ) from None
        self.network_ = network.to(self.device_).eval()
