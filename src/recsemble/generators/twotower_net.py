"""The two-tower network and its training loop (torch; imported only when the member is used).

Item tower: an id embedding plus a linear map of the item's content features (category
multi-hot and TF-IDF terms, one sparse row per item), L2-normalised. The id part is dropped for
items without interactions, and at random (`id_dropout`) in training, so the content path also
learns to place an item alone: a new item with content lands near items like it.

User tower: the item-tower vectors of the user's latest `history_len` events, pooled by weights
that fall with the event's position from the end (learned, initialised to a half-life in events)
and, optionally, with its age in days before the request moment; then a residual linear map and
L2 normalisation. It runs at request time on whatever history is passed in.

Training pairs are (events before t -> the event at t) over every user's time-ordered history
(simultaneous events in a fresh random order each epoch: they are not a sequence),
scored by an in-batch sampled softmax at temperature `temperature`, with the logQ correction
(each in-batch logit minus the log of its item's share of the targets: popular items are
sampled as negatives more often, and would otherwise be pushed down too much) and, optionally,
hard negatives mined after each epoch (the best-scored items a user never interacted with).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsemble.data.dataset import Dataset
from recsemble.generators.history import Histories
from recsemble.generators.neural import (
    EarlyStopping,
    ValidationWindow,
    autocast,
    batches,
    shuffle_ties,
)

if TYPE_CHECKING:
    from recsemble.generators.twotower import TwoTowerConfig
from recsemble.generators.topk import topk_rows

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
DAY = 86_400.0


@dataclass(frozen=True)
class Shape:
    """What fixes the network's parameters (everything else is data or config)."""

    n_items: int
    n_features: int
    dim: int
    history_len: int
    half_life_events: float | None  # the position weights' starting decay (None: flat)
    half_life_days: float | None  # fixed decay by age before the request moment


class TwoTowerNet(nn.Module):
    # Buffers (set in __init__): the items' content features as CSR, and which items have
    # interactions (an id embedding).
    feature_indptr: torch.Tensor
    feature_indices: torch.Tensor
    feature_values: torch.Tensor
    has_id: torch.Tensor

    def __init__(self, shape: Shape, features: sp.csr_array, has_id: npt.NDArray[np.bool_]):
        super().__init__()
        self.shape = shape
        self.item_ids = nn.Embedding(max(1, shape.n_items), shape.dim)
        self.content = nn.EmbeddingBag(max(1, shape.n_features), shape.dim, mode="sum")
        for table in (self.item_ids.weight, self.content.weight):
            nn.init.normal_(table, std=1.0 / math.sqrt(shape.dim))
        steps = torch.arange(shape.history_len, dtype=torch.float32)
        decay = 0.0 if shape.half_life_events is None else math.log(2) / shape.half_life_events
        self.position_logits = nn.Parameter(-decay * steps)
        self.user_map = nn.Linear(shape.dim, shape.dim)
        nn.init.zeros_(self.user_map.weight)  # starts as the identity (a residual map)
        nn.init.zeros_(self.user_map.bias)
        # Data, not parameters: saved as arrays by the generator, kept out of the state dict.
        values = torch.from_numpy(np.array(features.data, dtype=np.float32))
        self.register_buffer("feature_indptr", _long(features.indptr), persistent=False)
        self.register_buffer("feature_indices", _long(features.indices), persistent=False)
        self.register_buffer("feature_values", values, persistent=False)
        self.register_buffer("has_id", torch.from_numpy(has_id.copy()), persistent=False)

    def items(self, items: torch.Tensor, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Unit item vectors (zero for an item with neither interactions nor content)."""
        starts = self.feature_indptr[items]
        lengths = self.feature_indptr[items + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(
            int(lengths.sum()), device=items.device
        )
        content = self.content(
            self.feature_indices[flat], offsets, per_sample_weights=self.feature_values[flat]
        )
        keep = self.has_id[items] if id_keep is None else self.has_id[items] & id_keep
        vectors = content + self.item_ids(items) * keep.unsqueeze(1).to(content.dtype)
        return F.normalize(vectors, dim=1)

    def users(
        self,
        history: torch.Tensor,
        ages_days: torch.Tensor,
        table: torch.Tensor,
        cells: torch.Tensor,
    ) -> torch.Tensor:
        """Unit user vectors from (B, L) histories (item idx, -1 pads): cells[b, l] is the row
        of `table` (unit item vectors) holding history[b, l]'s vector."""
        weights = torch.exp(self.position_logits).unsqueeze(0) * (history >= 0)
        if self.shape.half_life_days is not None:
            weights = weights * torch.exp2(-ages_days / self.shape.half_life_days)
        weights = (weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)).to(table.dtype)
        # A weighted bag per row: its backward is a scatter over the table rows, several times
        # faster on the CPU than a gather (table[cells]) followed by a weighted sum.
        pooled = F.embedding_bag(cells, table, per_sample_weights=weights, mode="sum")
        return F.normalize(pooled + self.user_map(pooled), dim=1)


def _long(array: npt.ArrayLike) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.int64).copy())


def history_window(
    events: Histories, starts: I64, ends: I64, at: npt.NDArray[np.int64], length: int
) -> tuple[I64, F32]:
    """The last `length` items of events starts[r]:ends[r], most recent first (-1 pads), and
    their age in days before at[r]."""
    idx = ends[:, None] - 1 - np.arange(length)[None, :]
    valid = idx >= starts[:, None]
    if events.items.size == 0:
        return np.full(idx.shape, -1, dtype=np.int64), np.zeros(idx.shape, dtype=np.float32)
    safe = np.where(valid, idx, 0)
    history = np.where(valid, events.items[safe], -1).astype(np.int64)
    age = np.maximum(at[:, None] - events.timestamps[safe], 0) / DAY
    return history, np.where(valid, age, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------- scoring
@torch.no_grad()
def item_vectors(net: TwoTowerNet) -> torch.Tensor:
    """Every item's unit vector (eval mode: the id part wherever the item has interactions)."""
    net.eval()
    device = net.position_logits.device
    return net.items(torch.arange(net.shape.n_items, device=device))


@torch.no_grad()
def user_vectors(
    net: TwoTowerNet, items: torch.Tensor, histories: Histories, at: npt.NDArray[np.int64]
) -> torch.Tensor:
    """One unit vector per history row (from `items`, the item_vectors table)."""
    net.eval()
    history, ages = history_window(
        histories, histories.indptr[:-1], histories.indptr[1:], at, net.shape.history_len
    )
    device = items.device
    hist = torch.from_numpy(history).to(device)
    if items.shape[0] == 0:  # an empty catalog: nothing to pool
        return torch.zeros((hist.shape[0], net.shape.dim), device=device)
    return net.users(hist, torch.from_numpy(ages).to(device), items, hist.clamp_min(0))


#: Rows x items scored at once by top_unseen (float32: 64 MB).
SCORE_BLOCK_CELLS = 16_000_000


def top_unseen(
    net: TwoTowerNet, histories: Histories, at: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int32]:
    """Each history row's top-k items it has not interacted with (-1 padded), in blocks of
    rows: one users x items score matrix (hard negatives mine every user each epoch) took
    about 15 GB on ml-20m."""
    items = item_vectors(net)
    step = max(1, SCORE_BLOCK_CELLS // max(1, items.shape[0]))
    found = []
    for lo in range(0, max(histories.n_rows, 1), step):
        rows = np.arange(lo, min(lo + step, histories.n_rows))
        part = histories if rows.size == histories.n_rows else histories.rows(rows)
        scores = (user_vectors(net, items, part, at[rows]) @ items.T).float().cpu().numpy()
        part.mask_seen(scores)
        found.append(topk_rows(scores, k)[0])
    return np.concatenate(found)


# ---------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Pairs:
    """(history -> target) training pairs: every event that has earlier events in its row and
    repeats none of its row's earlier items (seen items are never recommended)."""

    events: Histories
    targets: I64  # event idx of each pair's target
    starts: I64  # the first event idx of each target's row
    rows: I64  # each target's row

    @classmethod
    def from_histories(cls, events: Histories) -> Pairs:
        rows = events.row_of_event
        n = rows.size
        order = np.lexsort((np.arange(n), events.items, rows))
        first_sorted = np.ones(n, dtype=bool)
        first_sorted[1:] = (rows[order][1:] != rows[order][:-1]) | (
            events.items[order][1:] != events.items[order][:-1]
        )
        first = np.empty(n, dtype=bool)
        first[order] = first_sorted
        starts = events.indptr[:-1][rows]
        targets = np.flatnonzero(first & (np.arange(n) > starts))
        return cls(events, targets, starts[targets], rows[targets])

    def log_q(self, n_items: int) -> torch.Tensor:
        """log of each item's share of the targets: its in-batch sampling probability."""
        counts = np.bincount(self.events.items[self.targets], minlength=n_items)
        share = counts / max(1, self.targets.size)
        return torch.from_numpy(np.log(np.maximum(share, 1e-12)).astype(np.float32))


@dataclass(frozen=True)
class Batch:
    history: torch.Tensor  # (B, L) item idx, -1 pads
    ages: torch.Tensor  # (B, L) days before the target's moment
    targets: torch.Tensor  # (B,)
    hard: torch.Tensor  # (B, H) mined negatives, -1 pads (H may be 0)


def make_batch(
    pairs: Pairs, picked: I64, length: int, hard: I64 | None, device: torch.device
) -> Batch:
    ends = pairs.targets[picked]
    at = pairs.events.timestamps[ends]  # the pair's moment: when the target happened
    history, ages = history_window(pairs.events, pairs.starts[picked], ends, at, length)
    negatives = hard[pairs.rows[picked]] if hard is not None else np.zeros((picked.size, 0))
    return Batch(
        torch.from_numpy(history).to(device),
        torch.from_numpy(ages).to(device),
        _long(pairs.events.items[ends]).to(device),
        _long(negatives).to(device),
    )


def batch_loss(
    net: TwoTowerNet, batch: Batch, log_q: torch.Tensor | None, temperature: float, id_keep: float
) -> torch.Tensor:
    """In-batch sampled softmax (+ mined negatives): each pair's target against the others'."""
    wanted = torch.cat([batch.history.clamp_min(0).flatten(), batch.targets, batch.hard.flatten()])
    unique, inverse = torch.unique(wanted.clamp_min(0), return_inverse=True)
    keep = torch.rand(unique.shape[0], device=unique.device) < id_keep
    table = net.items(unique, keep)
    n_hist, size = batch.history.numel(), batch.targets.shape[0]
    cells = inverse[:n_hist].view(batch.history.shape)
    users = net.users(batch.history, batch.ages, table, cells)
    targets = table[inverse[n_hist : n_hist + size]]
    logits = users @ targets.T / temperature
    if log_q is not None:
        logits = logits - log_q[batch.targets].unsqueeze(0)
    same = batch.targets.unsqueeze(0) == batch.targets.unsqueeze(1)  # a target twice in a batch
    logits = logits.masked_fill(same & ~torch.eye(size, dtype=torch.bool, device=same.device), -1e4)
    if batch.hard.shape[1]:
        hard = table[inverse[n_hist + size :]].view(*batch.hard.shape, -1)
        hard_logits = torch.einsum("bd,bhd->bh", users, hard) / temperature
        unusable = (batch.hard < 0) | (batch.hard == batch.targets.unsqueeze(1))
        logits = torch.cat([logits, hard_logits.masked_fill(unusable, -1e4)], dim=1)
    labels = torch.arange(size, device=logits.device)
    return F.cross_entropy(logits.float(), labels)


@dataclass
class TrainingLog:
    """What a training run did: epochs run, the epochs kept and seconds per epoch."""

    epochs_kept: int = 0
    validation: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    on_epoch: Callable[[], None] | None = None  # progress: called after each epoch


def fit_network(
    config: TwoTowerConfig,
    dataset: Dataset,
    features: sp.csr_array,
    window: ValidationWindow | None,
    epochs: int,
    log: TrainingLog,
) -> TwoTowerNet:
    """Train on `dataset` for up to `epochs`; with a window, keep the best epoch by its
    NDCG@10 (early stopping) and record it in log.epochs_kept."""
    from recsemble.generators.neural import seed_everything, torch_device

    device = torch_device(config.device, "twotower")
    generator = seed_everything(config.seed)
    events = Histories.from_dataset(dataset)
    pairs = Pairs.from_histories(events)
    rng = np.random.default_rng(config.seed)
    # id_dropout 1: every item trains on its content alone, so the id embeddings never learn;
    # scoring must not add them (random vectors) to the content either.
    has_id = np.asarray(dataset.item_popularity > 0) & (config.id_dropout < 1.0)
    net = build_network(config, features, has_id).to(device)
    held_out = Histories.from_dataset(window.fit_part).rows(window.users) if window else None
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    log_q = pairs.log_q(dataset.n_items).to(device) if config.logq else None
    stopper = EarlyStopping(config.patience)
    hard: I64 | None = None
    for _ in range(epochs if pairs.targets.size else 0):
        started = time.perf_counter()
        # Simultaneous events in a fresh order every epoch: in the histories' order (item idx)
        # the tower learnt "b follows a" from the ids' sort order alone.
        pairs = Pairs.from_histories(shuffle_ties(events, rng))
        net.train()
        for picked in batches(pairs.targets.size, config.batch_size, generator):
            batch = make_batch(pairs, picked.numpy(), config.history_len, hard, device)
            with autocast(device):
                loss = batch_loss(net, batch, log_q, config.temperature, 1.0 - config.id_dropout)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
        if config.hard_negatives:
            mined = top_unseen(net, events, _last_moments(events), config.hard_negatives)
            hard = mined.astype(np.int64)
        log.epoch_seconds.append(time.perf_counter() - started)
        if log.on_epoch is not None:
            log.on_epoch()
        if window is not None and held_out is not None:
            log.validation.append(window.ndcg(top_unseen(net, held_out, window.at, 10)))
            stopper.update(log.validation[-1], net)
            if stopper.stop:
                break
    log.epochs_kept = len(log.epoch_seconds)
    if window is not None and stopper.best_state is not None:
        stopper.restore(net)
        log.epochs_kept = stopper.best_epoch + 1
    return net.cpu().eval()


def build_network(
    config: TwoTowerConfig, features: sp.csr_array, has_id: npt.NDArray[np.bool_]
) -> TwoTowerNet:
    """A fresh network; has_id marks the items with interactions (the others are placed by
    their content alone)."""
    shape = Shape(
        n_items=int(features.shape[0]),
        n_features=int(features.shape[1]),
        dim=config.dim,
        history_len=config.history_len,
        half_life_events=config.half_life_events,
        half_life_days=config.half_life_days,
    )
    return TwoTowerNet(shape, features, has_id)


def _last_moments(events: Histories) -> npt.NDArray[np.int64]:
    last = events.timestamps[np.maximum(events.indptr[1:] - 1, 0)] if events.items.size else None
    return np.zeros(events.n_rows, np.int64) if last is None else last.astype(np.int64)
