"""Read routes the dashboard is built on (read key when keys are configured): known users,
a user's history, each member's own list, model versions with their evaluation summary,
and live request figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from prometheus_client import Histogram

from recsemble.pipeline import Recommender
from recsemble.recommender.browse import list_users, member_lists, user_history
from recsemble.serving.routes import PathId, checked, served_recommender, serving_state
from recsemble.serving.schemas import (
    MAX_K,
    TEXT_PATTERN,
    EventCountsOut,
    HistoryEventOut,
    HistoryOut,
    LatencyOut,
    MemberItemOut,
    MemberListOut,
    MembersOut,
    RequestCountOut,
    RouteLatencyOut,
    StatsOut,
    UsersOut,
    UserSummaryOut,
    VersionsOut,
    VersionSummaryOut,
)
from recsemble.serving.stats import counter_values, overall, percentiles_ms, read_latency
from recsemble.serving.summary import DECISION, EVALUATED_AS, numeric_metrics, text_metric
from recsemble.store.base import MAX_ID_LENGTH

router = APIRouter(tags=["dashboard"])
MAX_LIST = 1000


@router.get("/users", response_model=UsersOut)
def users(
    request: Request,
    prefix: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=TEXT_PATTERN)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> UsersOut:
    """Users the model can answer for whose id starts with `prefix`: fitted ones first (the
    model's order), then those known from live events only."""
    total, found = list_users(served_recommender(request), prefix, limit)
    summaries = [UserSummaryOut(user_id=u.user_id, history_length=u.history_length,
                                live_events=u.live_events) for u in found]  # fmt: skip
    return UsersOut(total=total, users=summaries)


@router.get("/users/{user_id}/history", response_model=HistoryOut)
def history(
    user_id: PathId, request: Request, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50
) -> HistoryOut:
    """The user's latest events, newest first: fitted ones and those since training."""
    recommender = served_recommender(request)
    total, events = checked(lambda: user_history(recommender, user_id, limit))
    return HistoryOut(
        user_id=user_id,
        user_known=user_id in recommender.users,
        total=total,
        events=[
            HistoryEventOut(
                item_id=e.item_id,
                title=e.title,
                type=e.type,
                timestamp=e.timestamp,
                weight=e.weight,
                live=e.live,
            )
            for e in events
        ],
    )


@router.get("/users/{user_id}/members", response_model=MembersOut)
def members(
    user_id: PathId, request: Request, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10
) -> MembersOut:
    """What each ensemble member alone would recommend to the user now (their current
    history, live events included; their items and removed items left out)."""
    recommender = served_recommender(request)
    lists = checked(lambda: member_lists(recommender, user_id, k))
    return MembersOut(
        user_id=user_id,
        model_version=recommender.version,
        ensemble=recommender.serving.is_ensemble,
        members=[
            MemberListOut(
                label=m.label,
                generator=m.generator,
                items=[
                    MemberItemOut(item_id=r.item_id, title=r.title, score=r.score, rank=rank)
                    for rank, r in enumerate(m.items, start=1)
                ],
            )
            for m in lists
        ],
    )


@router.get("/models", response_model=VersionsOut)
def model_versions(request: Request) -> VersionsOut:
    """Every registered version with its evaluation summary (`serve --results`)."""
    state = serving_state(request)
    current = state.registry.current()
    serving = state.recommender.version if state.recommender else None
    versions = [
        VersionSummaryOut(
            version=info.version,
            created_at=info.created_at,
            current=info.version == current,
            serving=info.version == serving,
            metrics=numeric_metrics(info.metrics),
            evaluated_as=text_metric(info.metrics, EVALUATED_AS),
            decision=text_metric(info.metrics, DECISION),
        )
        for info in state.registry.versions()
    ]
    return VersionsOut(current=current, serving=serving, versions=versions)


@router.get("/stats", response_model=StatsOut)
def stats(request: Request) -> StatsOut:
    """Requests by route and status, latency percentiles, events, live state."""
    metrics = request.app.state.metrics
    latency: Histogram = metrics.latency
    counts, by_route = read_latency(latency)
    api = overall(by_route)
    events = counter_values(metrics.events, "outcome", ("accepted", "duplicate"))
    recommender: Recommender | None = serving_state(request).recommender
    return StatsOut(
        serving=recommender.version if recommender else None,
        uptime_s=round(time.monotonic() - request.app.state.started, 1),
        requests_total=sum(c.count for c in counts),
        requests=[
            RequestCountOut(route=c.route, method=c.method, status=c.status, count=c.count)
            for c in counts
        ],
        latency=_latency(api.total, percentiles_ms(api)),
        latency_by_route=[
            RouteLatencyOut(route=route, **_latency(b.total, percentiles_ms(b)).model_dump())
            for route, b in sorted(by_route.items())
            if b.total
        ],
        events=EventCountsOut(accepted=events["accepted"], duplicates=events["duplicate"]),
        live_users=0 if recommender is None else len(recommender.live.users),
        refresh_pending=0 if recommender is None else len(recommender.refresh.pending),
        report_available=_state_report(request) is not None,
        precomputed_hits=serving_state(request).precomputed.hits,
        precomputed_misses=serving_state(request).precomputed.misses,
        click_event_type=_click_event_type(recommender),
    )


def _click_event_type(recommender: Recommender | None) -> str:
    weights = {} if recommender is None else recommender.live.event_weights
    return min(weights, key=lambda t: (weights[t], t)) if weights else "click"


def _state_report(request: Request) -> Path | None:
    path: Path | None = serving_state(request).settings.report_path
    return path if path is not None and path.is_file() else None


def _latency(count: int, ms: dict[str, float | None]) -> LatencyOut:
    return LatencyOut(count=count, p50_ms=ms["p50"], p95_ms=ms["p95"], p99_ms=ms["p99"])
