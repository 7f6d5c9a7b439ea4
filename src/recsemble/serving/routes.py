"""The API's routes: events, items and users in; recommendations, similar items, explanations
out; model administration. Each route parses, calls the serving state, shapes the answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BeforeValidator

from recsemble.errors import ConfigError, NotRecommendableError
from recsemble.pipeline import Answer, Explanation, Recommender, RequestOptions
from recsemble.serving.guard import SLASH_IN_SEGMENT
from recsemble.serving.precomputed import cacheable
from recsemble.serving.retrain import retraining_status
from recsemble.serving.schemas import (
    ENTITY_ID_PATTERN,
    MAX_K,
    STAGES_PATTERN,
    BecauseOut,
    EventsIn,
    EventsOut,
    ExplanationOut,
    ItemIn,
    ModelsOut,
    ModelVersionOut,
    RecommendationOut,
    RecommendationsOut,
    RecordOut,
    RetrainingOut,
    SessionIn,
    TrainOut,
    UserIn,
    storable_id,
)
from recsemble.serving.state import ServingState
from recsemble.serving.summary import numeric_metrics
from recsemble.store.base import Event, Record

router = APIRouter()
_T = TypeVar("_T")
PathId = Annotated[
    str,
    Path(min_length=1, max_length=256, pattern=ENTITY_ID_PATTERN),
    BeforeValidator(lambda value: value.replace(SLASH_IN_SEGMENT, "/")),  # see guard.py
    AfterValidator(storable_id),
]
# Bounded so the encoded URL (up to 12 bytes a character) stays under the server's 64 KiB
# request-head limit (cli_serve.py): a longer one would be refused before the app sees it.
CsvIds = Annotated[str | None, Query(max_length=2000, description="Comma-separated ids.")]


def serving_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


def served_recommender(request: Request) -> Recommender:
    recommender = serving_state(request).recommender
    if recommender is None:
        raise HTTPException(503, "no model is loaded yet; see /health/ready")
    return recommender


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part for part in (text or "").split(",") if part)


def _json(body: RecommendationsOut) -> Response:
    """The answer serialised once: returning the model would make FastAPI validate it again."""
    return Response(body.model_dump_json(), media_type="application/json")


def _explanation(e: Explanation) -> ExplanationOut:
    because = [BecauseOut(item_id=item, weight=weight) for item, weight in e.because]
    return ExplanationOut(item_id=e.item_id, members=e.members, because=because, text=e.text)


def _answer(answer: Answer, served_from: str = "online") -> RecommendationsOut:
    items = []
    for rec in answer.items:
        explanation = None
        if rec.explanation is not None:
            e = rec.explanation
            explanation = _explanation(e)
        items.append(
            RecommendationOut(
                item_id=rec.item_id, score=rec.score, title=rec.title, explanation=explanation
            )
        )
    return RecommendationsOut(
        items=items,
        model_version=answer.model_version,
        source=answer.source,
        user_known=answer.user_known,
        served_from="precomputed" if served_from == "precomputed" else "online",
    )


# -- writes ----------------------------------------------------------------------------------
@router.post("/events", response_model=EventsOut, tags=["events"])
def post_events(body: EventsIn, request: Request) -> EventsOut:
    """Store events (2xx only after the commit); a retried event_id is counted once."""
    now = int(time.time())
    events = [
        Event(e.event_id, e.user_id, e.item_id, e.type, e.timestamp or now, e.value)
        for e in body.events
    ]
    state = serving_state(request)
    result = checked(lambda: state.ingest(events))
    counter = request.app.state.metrics.events
    counter.labels("accepted").inc(result.accepted)
    counter.labels("duplicate").inc(result.duplicates)
    return EventsOut(accepted=result.accepted, duplicates=result.duplicates)


@router.put("/items/{item_id}", response_model=RecordOut, tags=["catalog"])
def put_item(item_id: PathId, body: ItemIn, request: Request) -> RecordOut:
    state = serving_state(request)
    checked(lambda: state.upsert("item", Record(item_id, body.model_dump())))
    return RecordOut(id=item_id, kind="item", deleted=False)


@router.delete("/items/{item_id}", response_model=RecordOut, tags=["catalog"])
def delete_item(item_id: PathId, request: Request) -> RecordOut:
    """The item disappears from every list at once; it stays stored, flagged deleted (an item
    of the training data too), so restarts and model swaps keep it out."""
    serving_state(request).delete("item", item_id)
    return RecordOut(id=item_id, kind="item", deleted=True)


@router.put("/users/{user_id}", response_model=RecordOut, tags=["catalog"])
def put_user(user_id: PathId, body: UserIn, request: Request) -> RecordOut:
    state = serving_state(request)
    checked(lambda: state.upsert("user", Record(user_id, body.attributes)))
    return RecordOut(id=user_id, kind="user", deleted=False)


# -- reads -----------------------------------------------------------------------------------
@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["recs"])
async def recommendations(
    user_id: PathId,
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    exclude: CsvIds = None,
    categories: CsvIds = None,
    rerank: Annotated[
        str | None,
        Query(
            max_length=300,
            pattern=STAGES_PATTERN,
            description="Comma-separated stages instead of the configured ones; empty: none.",
        ),
    ] = None,
    explain: bool = False,
) -> Response:
    """Top-k for a user (unknown users get the cold-start chain, marked in `source`)."""
    options = RequestOptions(
        k=k,
        exclude=_csv(exclude),
        categories=_csv(categories) or None,
        rerank=_csv(rerank) if rerank is not None else None,
        explain=explain,
    )
    recommender = served_recommender(request)
    # The precomputed list first (a store read: a worker thread), when it is still the answer.
    lists = serving_state(request).precomputed
    if cacheable(options):
        cached = await run_in_threadpool(lists.answer, recommender, user_id, options)
        if cached is not None:
            return _json(_answer(cached, "precomputed"))
    call = partial(checked, lambda: recommender.recommend(user_id, options))
    # The cached path takes well under a millisecond: run it on the event loop. Explanations
    # recompute the model for the user (~100 ms): a worker thread, so other requests go on.
    answer = await run_in_threadpool(call) if explain else call()
    return _json(_answer(answer))


@router.get(
    "/users/{user_id}/recommendations/{item_id}/explanation",
    response_model=ExplanationOut,
    tags=["recs"],
)
def explanation(user_id: PathId, item_id: PathId, request: Request) -> ExplanationOut:
    """Why this item for this user: the members that proposed it and the user's own items
    (409 for an item in no answer to the user: one of their history, or unavailable)."""
    return _explanation(checked(lambda: served_recommender(request).explain(user_id, item_id)))


@router.get("/items/{item_id}/similar", response_model=RecommendationsOut, tags=["recs"])
def similar(
    item_id: PathId, request: Request, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10
) -> RecommendationsOut:
    return _answer(checked(lambda: served_recommender(request).similar(item_id, k)))


@router.post("/recommendations", response_model=RecommendationsOut, tags=["recs"])
def session_recommendations(body: SessionIn, request: Request) -> RecommendationsOut:
    """Recommendations for an anonymous session: its recent item ids, oldest first."""
    options = RequestOptions(
        k=body.k,
        exclude=tuple(body.exclude),
        categories=tuple(body.categories) if body.categories else None,
        rerank=tuple(body.rerank) if body.rerank is not None else None,
        explain=body.explain,
    )
    recommender = served_recommender(request)
    return _answer(checked(lambda: recommender.recommend_session(body.item_ids, options)))


def checked(call: Callable[[], _T]) -> _T:
    """Unknown ids -> 404, options the model cannot honour or an item in no answer to the user
    -> 409, bad options -> 422."""
    try:
        return call()
    except (ConfigError, NotRecommendableError) as exc:  # e.g. a stage the data cannot support
        raise HTTPException(409, str(exc)) from None
    except KeyError as exc:
        raise HTTPException(404, f"unknown id: {exc.args[0] if exc.args else exc}") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


# -- admin -----------------------------------------------------------------------------------
@router.get("/admin/models", response_model=ModelsOut, tags=["admin"])
def models(request: Request) -> ModelsOut:
    state = serving_state(request)
    current = state.registry.current()
    versions = [
        ModelVersionOut(
            version=info.version,
            current=info.version == current,
            created_at=info.created_at,
            metrics=numeric_metrics(info.metrics),  # texts (e.g. the decision): GET /models
        )
        for info in state.registry.versions()
    ]
    serving = state.recommender.version if state.recommender else None
    job = retraining_status()
    retraining = None if job is None else RetrainingOut(**asdict(job))
    return ModelsOut(current=current, serving=serving, versions=versions, retraining=retraining)


@router.post("/admin/models/{version}/publish", response_model=ModelsOut, tags=["admin"])
def publish(
    version: Annotated[str, Path(min_length=1, max_length=128)], request: Request
) -> ModelsOut:
    """Verify, load and warm the version, then switch to it atomically."""
    state = serving_state(request)
    if version not in {info.version for info in state.registry.versions()}:
        raise HTTPException(404, f"no model version {version!r}")
    state.publish(version)
    return models(request)


@router.post("/admin/rollback", response_model=ModelsOut, tags=["admin"])
def rollback(request: Request) -> ModelsOut:
    serving_state(request).rollback()
    return models(request)


@router.post("/admin/train", response_model=TrainOut, status_code=202, tags=["admin"])
def train(request: Request) -> TrainOut:
    """Start retraining in a background process; the new version is published when done."""
    from recsemble.serving.retrain import start_retraining

    job = start_retraining(serving_state(request))
    return TrainOut(job=job.name, status="started")
