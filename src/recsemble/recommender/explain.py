"""Explanations read off the actual scores: which members proposed an item and how much each
moved the ranker's score, and which of the user's own items led to it.

Member contributions are an exact additive split of the ranker's score for the (user, item)
candidate: TreeSHAP values for the LightGBM ranker (summed over each member's score, rank and
z features; raw margin, i.e. log-odds for the binary objective), weight x standardised
feature for the logistic ranker, weight x calibrated vote for the blend. Where the ensemble
routes the user's history slice to one member alone, that member gets 1.0.

"Because" items are the largest terms p_j * M[j, i] of an item-item member's score for item i
(item-kNN similarities, EASE weights or co-visitation transitions), where p is that member's
own profile of the history: the terms add up to the member's score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.errors import NotRecommendableError
from recsemble.evaluation.slices import history_slice_labels
from recsemble.generators import CandidateGenerator
from recsemble.generators.history import Histories, profile_matrix
from recsemble.ranking.ensemble import Ensemble, RankedBlock
from recsemble.recommender.items import ItemState
from recsemble.recommender.model import Pool, ServingModel
from recsemble.recommender.requests import Answer, Explanation, Recommendation

I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
#: A listed item's evidence: member -> contribution to its score, member -> its rank there.
MemberEvidence = tuple[dict[str, float], dict[str, int]]
#: Members whose score is a sum of per-history-item terms, in order of preference.
BECAUSE_MEMBERS = ("itemknn", "itemknn-recent", "ease", "ease-recent", "covisit")
#: History items named per explanation.
BECAUSE_ITEMS = 3
#: The explanation of an item the model never saw (added after training, content-matched).
NEW_ITEM_TEXT = "New item, similar in content to your items"


@dataclass(frozen=True)
class Evidence:
    """Why one item: contribution and rank per proposing member, and the history items."""

    item: int
    members: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    because: list[tuple[int, float]] = field(default_factory=list)
    because_member: str | None = None


class Explainer:
    """Evidence for some items of one user's list, recomputed from the model (one call)."""

    def __init__(self, serving: ServingModel) -> None:
        self.serving = serving

    def explain_session(self, answer: Answer, session: Histories, items: ItemState) -> Answer:
        """An anonymous session's answer explained from its history."""
        model_items = [items.idx(r.item_id) for r in answer.items]
        wanted = [i for i in model_items if i is not None]
        evidence = self.evidence(-1, session, wanted, None) if wanted else []
        return explained_answer(answer, {e.item: e for e in evidence}, model_items, items)

    def evidence(
        self, user: int, histories: Histories | None, items: Sequence[int], pool: Pool | None
    ) -> list[Evidence]:
        """histories: the one-row history the pool was computed from (None: the fitted one)."""
        model = self.serving.model
        if isinstance(model, Ensemble):
            found = self._ensemble_members(model, user, histories, items)
        else:
            found = self._lone_member(model, pool, items)
        out = []
        for item, (members, ranks) in zip(items, found, strict=True):
            label, because = self._because(user, histories, item, list(ranks))
            out.append(Evidence(item, members, ranks, because, label))
        return out

    # -- members ---------------------------------------------------------------------------
    def _ensemble_members(
        self, ens: Ensemble, user: int, histories: Histories | None, items: Sequence[int]
    ) -> list[MemberEvidence]:
        users = np.array([user], np.int32)
        block = next(iter(ens.ranked_blocks(users, exclude_seen=True, histories=histories)))
        cands = block.candidates
        position = {int(item): row for row, item in enumerate(cands.items.tolist())}
        rows = [position.get(int(item)) for item in items]
        present = np.array([r for r in rows if r is not None], dtype=np.int64)
        contributions = self._contributions(ens, block, present, user, histories)
        return member_evidence(block, rows, contributions)

    def _contributions(
        self,
        ens: Ensemble,
        block: RankedBlock,
        rows: npt.NDArray[np.int64],
        user: int,
        histories: Histories | None,
    ) -> F64:
        """(rows, members): each member's additive share of the score of those candidates."""
        cands = block.candidates
        n_members = len(cands.members)
        if rows.size == 0:
            return np.zeros((0, n_members))
        direct = self._direct_member(ens, user, histories)
        if direct is not None:  # that member's own order ranked this list, alone
            out = np.zeros((rows.size, n_members))
            out[:, cands.members.index(direct)] = 1.0
            return out
        if ens.blend_ is not None:
            # take() keeps the candidates' order, not the list's: put the votes back in `rows`.
            votes = ens.blend_.calibrators_.predict(cands.take(_mask(rows, cands.size)))
            in_list_order = votes[np.searchsorted(np.sort(rows), rows)]
            return np.asarray(in_list_order * ens.blend_.weights_, dtype=np.float64)
        per_feature = _feature_contributions(ens, block.features.values[rows])
        return _group_by_member(per_feature, block.features.names, cands.members)

    def _direct_member(self, ens: Ensemble, user: int, histories: Histories | None) -> str | None:
        direct = getattr(ens, "direct_", None)
        if not direct:
            return None
        hist = ens.histories_.rows([user]) if histories is None else histories
        slice_name = str(history_slice_labels(hist.lengths)[0])
        found: str | None = direct.get(slice_name)
        return found

    def _lone_member(
        self, model: CandidateGenerator, pool: Pool | None, items: Sequence[int]
    ) -> list[MemberEvidence]:
        rank = {} if pool is None else {int(i): r + 1 for r, i in enumerate(pool.items.tolist())}
        score = (
            {}
            if pool is None
            else dict(zip(pool.items.tolist(), pool.scores.tolist(), strict=True))
        )
        out: list[MemberEvidence] = []
        for item in items:
            if int(item) in rank:
                out.append(({model.name: float(score[int(item)])}, {model.name: rank[int(item)]}))
            else:
                out.append(({}, {}))
        return out

    # -- because ---------------------------------------------------------------------------
    def _because(
        self, user: int, histories: Histories | None, item: int, proposers: list[str]
    ) -> tuple[str | None, list[tuple[int, float]]]:
        member = self._because_member(proposers)
        if member is None:
            return None, []
        label, model = member
        hist = model.histories_.rows([user]) if histories is None else histories
        terms = history_terms(model, hist, item, self.serving.now)
        if terms is None:
            return None, []
        history_items, weights = terms
        order = np.argsort(-weights, kind="stable")[:BECAUSE_ITEMS]
        order = order[weights[order] > 0]
        return label, [(int(history_items[j]), float(weights[j])) for j in order]

    def _because_member(self, proposers: list[str]) -> tuple[str, CandidateGenerator] | None:
        members = self.serving.members
        usable = [(label, m) for label, m in members.items() if m.name in BECAUSE_MEMBERS]
        usable.sort(key=lambda pair: BECAUSE_MEMBERS.index(pair[1].name))
        for label, member in usable:  # one that proposed the item, else the preferred one
            if label in proposers:
                return label, member
        return usable[0] if usable else None


def member_evidence(
    block: RankedBlock, rows: Sequence[int | None], contributions: F64
) -> list[MemberEvidence]:
    """Per listed item (its candidate row, None: not a candidate): each member that proposed it,
    with its contribution (`contributions`: one row per candidate row given) and its rank."""
    cands = block.candidates
    out: list[MemberEvidence] = []
    at = 0
    for row in rows:
        if row is None:
            out.append(({}, {}))
            continue
        ranks = cands.ranks[row]
        proposed = [m for m in range(len(cands.members)) if np.isfinite(ranks[m])]
        members = {cands.members[m]: float(contributions[at, m]) for m in proposed}
        out.append((members, {cands.members[m]: int(ranks[m]) for m in proposed}))
        at += 1
    return out


def history_terms(
    member: CandidateGenerator, histories: Histories, item: int, at: int
) -> tuple[I32, F64] | None:
    """(history items j, p_j * M[j, item]) of an item-item member's score for `item`, whose sum
    is that score; None for a member that is not such a sum."""
    config: Any = member.config
    profile = sp.csr_array(profile_matrix(histories, config, np.array([at], np.int64)))
    history_items = profile.indices.astype(np.int32)
    p = profile.data.astype(np.float64)
    matrix = _item_item_matrix(member)
    if matrix is None:
        return None
    if isinstance(matrix, np.ndarray):
        column = matrix[history_items, item].astype(np.float64)
    else:
        column = np.asarray(matrix[history_items][:, [item]].toarray(), np.float64).ravel()
    return history_items, p * column


def _item_item_matrix(member: CandidateGenerator) -> Any:
    """The member's (history item x candidate) matrix: score = profile @ matrix."""
    if member.name in ("itemknn", "itemknn-recent"):
        return getattr(member, "similarity_", None)
    if member.name in ("ease", "ease-recent"):
        return getattr(member, "weights_", None)
    if member.name == "covisit":
        return getattr(member, "transitions_", None)
    return None


def _mask(rows: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros(size, dtype=np.bool_)
    mask[rows] = True
    return mask


def _feature_contributions(ens: Ensemble, values: npt.NDArray[np.float32]) -> F64:
    """(rows, features): the ranker's score split over its input features."""
    ranker = ens.ranker_
    if ranker.kind_ == "lightgbm":
        raw = ranker.booster_.predict(values, pred_contrib=True, num_threads=1)
        return np.asarray(raw, dtype=np.float64)[:, :-1]  # last column: the expected value
    filled = np.where(np.isnan(values), ranker.fill_, values)
    standardised = (filled - ranker.mean_) / ranker.scale_
    return np.asarray(standardised * ranker.coef_, dtype=np.float64)


def _group_by_member(per_feature: F64, names: Sequence[str], members: Sequence[str]) -> F64:
    """Sum of the contributions of each member's own features ("<label>:score" etc.)."""
    out = np.zeros((per_feature.shape[0], len(members)))
    for m, label in enumerate(members):
        columns = [f for f, name in enumerate(names) if name.rsplit(":", 1)[0] == label]
        out[:, m] = per_feature[:, columns].sum(axis=1)
    return out


def describe(
    members: dict[str, float],
    ranks: dict[str, int],
    because: Sequence[str],
    source: str,
) -> str:
    """A sentence: "Proposed by itemknn (rank 3) and ease (rank 7); because you watched X"."""
    strongest = sorted(members, key=lambda label: -members[label])
    parts = []
    if strongest:
        named = [f"{label} (rank {ranks[label]})" for label in strongest]
        parts.append("Proposed by " + _join(named))
    else:
        parts.append(_SOURCE_TEXT.get(source, "Recommended"))
    if because:
        parts.append("because you watched " + _join(list(because)))
    return "; ".join(parts)


_SOURCE_TEXT = {
    "session": "Recommended from your latest activity",
    "cold:segment": "Popular with users like you",
    "cold:trending": "Trending now",
    "cold:popular": "Popular overall",
    "content": "Similar in content",
    "model": "Recommended",
}


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def check_recommendable(
    items: ItemState, item_id: str, user_id: str, seen: I32, seen_new: frozenset[str]
) -> None:
    """NotRecommendableError when no answer to the user can hold the item, so that no
    explanation pretends it was recommended: an item they have seen (`seen`: the fitted history
    and the live model items the seen rule counts; `seen_new`: items added after training) or
    one unavailable now."""
    idx, new = items.idx(item_id), items.new_items.get(item_id)
    if item_id in seen_new or (idx is not None and np.isin(idx, seen).item()):
        raise NotRecommendableError(
            f"item {item_id!r} is in the history of user {user_id!r}: it is never recommended "
            "to them, so there is nothing to explain"
        )
    if (idx is not None and items.unavailable[idx]) or (new is not None and not new.available):
        raise NotRecommendableError(f"item {item_id!r} is unavailable: it is in no answer now")


def explanation(evidence: Evidence, source: str, items: ItemState) -> Explanation:
    """An item's evidence in external ids and words."""
    ids = items.ids
    because = [(ids.id_of(j), weight) for j, weight in evidence.because]
    names = [items.titles[j] or ids.id_of(j) for j, _ in evidence.because]
    text = describe(evidence.members, evidence.ranks, names, source)
    return Explanation(ids.id_of(evidence.item), dict(evidence.members), because, text)


def explained_answer(
    answer: Answer,
    evidence: Mapping[int, Evidence],
    model_items: Sequence[int | None],
    items: ItemState,
) -> Answer:
    """The answer with each item's explanation (model_items: each item's idx in the model,
    None for an item added after training)."""
    explained = []
    for rec, idx in zip(answer.items, model_items, strict=True):
        found = evidence.get(idx) if idx is not None else None
        reason = (
            explanation(found, answer.source, items)
            if found is not None
            else Explanation(rec.item_id, {}, [], NEW_ITEM_TEXT)
        )
        explained.append(Recommendation(rec.item_id, rec.score, rec.title, reason))
    return Answer(explained, answer.model_version, answer.source, answer.user_known)


def new_item_explained(answer: Answer) -> Answer:
    """`answer` with its last item (the new-item slot) explained as a new item."""
    new = answer.items[-1]
    reason = Explanation(new.item_id, {}, [], NEW_ITEM_TEXT)
    items = [*answer.items[:-1], Recommendation(new.item_id, new.score, new.title, reason)]
    return Answer(items, answer.model_version, answer.source, answer.user_known)
