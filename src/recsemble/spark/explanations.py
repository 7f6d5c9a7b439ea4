"""The API's explanations for a block of users' lists, with the "because" terms in batch.

recommender/explain.py explains one user at a time and recomputes a member's profile of the
history for every item it explains: fine for one request, most of the cost of a batch. Here
each member's profiles are computed once for all the block's users (profile_matrix is
row-wise, so a row of the batch equals the one-row profile) and each user's items are read
off one submatrix. Member contributions and ranks come from recommender/explain.py's own
code (cheap for a lone generator: read off the pool); the text from its `describe`. The
result equals `Recommender.recommend(..., explain=True)`'s, which tests/spark check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.generators import CandidateGenerator
from recsemble.generators.history import Histories, profile_matrix
from recsemble.pipeline import Answer, Recommender
from recsemble.ranking.ensemble import Ensemble, RankedBlock
from recsemble.recommender.explain import (
    BECAUSE_ITEMS,
    BECAUSE_MEMBERS,
    Evidence,
    MemberEvidence,
    _feature_contributions,
    _group_by_member,
    _item_item_matrix,
    explained_answer,
    member_evidence,
)
from recsemble.recommender.model import Pool

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Request:
    """One user's list to explain: model idx, the pool it came from, the answer and the model
    idx of its items."""

    user: int
    pool: Pool
    answer: Answer
    items: list[int]


def explain_block(recommender: Recommender, requests: Sequence[Request]) -> list[Answer]:
    """Each answer with the explanation of each of its items (see the module docstring)."""
    model = recommender.serving.model
    if isinstance(model, Ensemble):
        members = _ensemble_evidence(recommender, model, requests)
    else:
        explainer = recommender.explainer
        members = [explainer._lone_member(model, req.pool, req.items) for req in requests]
    because = _because_block(recommender, requests, members)
    out = []
    for req, found, terms in zip(requests, members, because, strict=True):
        evidence = [
            Evidence(item, m, ranks, terms[position][1], terms[position][0])
            for position, (item, (m, ranks)) in enumerate(zip(req.items, found, strict=True))
        ]
        out.append(_with_explanations(recommender, req.answer, evidence))
    return out


# -- ensemble members ------------------------------------------------------------------------
def _ensemble_evidence(
    rec: Recommender, ens: Ensemble, requests: Sequence[Request]
) -> list[list[MemberEvidence]]:
    """Explainer._ensemble_members for every request, from one ranked_blocks pass per kind
    of history (the fitted one, or the pools' own) instead of one model call per user."""
    out: list[list[MemberEvidence]] = [[] for _ in requests]
    for fitted in (True, False):
        chosen = [r for r, req in enumerate(requests) if (req.pool.histories is None) == fitted]
        if not chosen:
            continue
        users = np.array([requests[r].user for r in chosen], np.int32)
        rows = [requests[r].pool.histories for r in chosen]
        hist = None if fitted else _stack([h for h in rows if h is not None], ens.n_items_)
        for block in ens.ranked_blocks(users, exclude_seen=True, histories=hist):
            here = chosen[block.lo : block.lo + block.candidates.n_rows]
            found = _block_evidence(rec, ens, block, [requests[r] for r in here])
            for r, evidence in zip(here, found, strict=True):
                out[r] = evidence
    return out


def _block_evidence(
    rec: Recommender, ens: Ensemble, block: RankedBlock, requests: Sequence[Request]
) -> list[list[MemberEvidence]]:
    cands = block.candidates
    starts = np.searchsorted(cands.rows, np.arange(cands.n_rows + 1))
    positions: list[list[int | None]] = []
    for i, req in enumerate(requests):  # candidates are ordered by (row, item)
        lo, hi = int(starts[i]), int(starts[i + 1])
        where = lo + np.searchsorted(cands.items[lo:hi], req.items)
        hit = (where < hi) & (cands.items[np.minimum(where, cands.size - 1)] == req.items)
        positions.append([int(a) if h else None for a, h in zip(where, hit, strict=True)])
    present = [np.array([p for p in ps if p is not None], np.int64) for ps in positions]
    contributions = _contributions(rec, ens, block, requests, present)
    return [
        member_evidence(block, ps, share)
        for ps, share in zip(positions, contributions, strict=True)
    ]


def _contributions(
    rec: Recommender,
    ens: Ensemble,
    block: RankedBlock,
    requests: Sequence[Request],
    present: list[npt.NDArray[np.int64]],
) -> list[npt.NDArray[np.float64]]:
    """Explainer._contributions per request; the meta-ranker's feature contributions (row-wise)
    in one call for every request that is not routed to one member or blended."""
    explainer = rec.explainer
    names, members = block.features.names, block.candidates.members
    out: list[npt.NDArray[np.float64] | None] = [None] * len(requests)
    batched = []
    for i, req in enumerate(requests):
        direct = explainer._direct_member(ens, req.user, req.pool.histories)
        if ens.blend_ is None and direct is None and present[i].size:
            batched.append(i)
        else:
            share = explainer._contributions(ens, block, present[i], req.user, req.pool.histories)
            out[i] = share
    if batched:
        rows = np.concatenate([present[i] for i in batched])
        per_feature = _feature_contributions(ens, block.features.values[rows])
        grouped = _group_by_member(per_feature, names, members)
        bounds = np.cumsum([present[i].size for i in batched])[:-1]
        for i, part in zip(batched, np.split(grouped, bounds), strict=True):
            out[i] = part
    return [share for share in out if share is not None]


def _with_explanations(rec: Recommender, answer: Answer, evidence: list[Evidence]) -> Answer:
    """evidence: one per listed item, in list order."""
    by_item = {e.item: e for e in evidence}
    return explained_answer(answer, by_item, [e.item for e in evidence], rec.items)


Because = tuple[str | None, list[tuple[int, float]]]


def _because_block(
    rec: Recommender, requests: Sequence[Request], members: list[list[MemberEvidence]]
) -> list[list[Because]]:
    """(member label, [(history item, weight)]) per item of every request."""
    out: list[list[Because]] = [[(None, [])] * len(req.items) for req in requests]
    wanted: dict[str, list[tuple[int, int]]] = {}  # member label -> (request, position)
    for r, found in enumerate(members):
        for position, (_, ranks) in enumerate(found):
            label = _because_member(rec, list(ranks))
            if label is not None:
                wanted.setdefault(label, []).append((r, position))
    for label, places in wanted.items():
        member = rec.serving.members[label]
        matrix = _item_item_matrix(member)
        if matrix is None:
            continue
        by_request: dict[int, list[int]] = {}
        for r, position in places:
            by_request.setdefault(r, []).append(position)
        order = sorted(by_request)
        profiles = _profiles(rec, member, [requests[r] for r in order])
        for row, r in enumerate(order):
            items = [requests[r].items[p] for p in by_request[r]]
            terms = _terms(profiles, row, matrix, items)
            for p, because in zip(by_request[r], terms, strict=True):
                out[r][p] = (label, because)
    return out


def _because_member(rec: Recommender, proposers: list[str]) -> str | None:
    """explain.Explainer._because_member's choice, by label."""
    usable = [(label, m) for label, m in rec.serving.members.items() if m.name in BECAUSE_MEMBERS]
    usable.sort(key=lambda pair: BECAUSE_MEMBERS.index(pair[1].name))
    for label, _ in usable:
        if label in proposers:
            return label
    return usable[0][0] if usable else None


def _profiles(
    rec: Recommender, member: CandidateGenerator, requests: Sequence[Request]
) -> sp.csr_array:
    """The member's profile of each request's history (its own fitted one, or the pool's)."""
    rows = [
        member.histories_.rows([req.user]) if req.pool.histories is None else req.pool.histories
        for req in requests
    ]
    stacked = _stack(rows, member.n_items_)
    config: Any = member.config
    at = np.full(len(rows), rec.serving.now, np.int64)
    return sp.csr_array(profile_matrix(stacked, config, at))


def _stack(rows: Sequence[Histories], n_items: int) -> Histories:
    lengths = [h.items.size for h in rows]
    return Histories(
        np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        np.concatenate([h.items for h in rows]),
        np.concatenate([h.timestamps for h in rows]),
        np.concatenate([h.weights for h in rows]),
        n_items,
    )


def _terms(
    profiles: sp.csr_array, row: int, matrix: Any, items: list[int]
) -> list[list[tuple[int, float]]]:
    """The BECAUSE_ITEMS largest positive terms p_j * M[j, item] for each item (explain's
    history_terms and _because, for several items of one row at once)."""
    lo, hi = profiles.indptr[row], profiles.indptr[row + 1]
    history_items = profiles.indices[lo:hi].astype(np.int32)
    p = profiles.data[lo:hi].astype(np.float64)
    if isinstance(matrix, np.ndarray):
        block = matrix[np.ix_(history_items, np.asarray(items, np.int64))].astype(np.float64)
    else:
        block = np.asarray(matrix[history_items][:, items].toarray(), np.float64)
    out = []
    for column in range(len(items)):
        weights = p * block[:, column]
        order = np.argsort(-weights, kind="stable")[:BECAUSE_ITEMS]
        order = order[weights[order] > 0]
        out.append([(int(history_items[j]), float(weights[j])) for j in order])
    return out
