"""Request and response bodies of the HTTP API (separate models, unknown fields rejected).

Limits live in the request models, so a bad body is a 422 naming the field: ids are 1..256
characters, batches at most MAX_BATCH events, numbers finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from recsemble.data.tables import id_problem
from recsemble.store.base import MAX_ID_LENGTH, MAX_TIMESTAMP

MAX_BATCH = 1000
MAX_K = 1000
MAX_SESSION_ITEMS = 200
MAX_CATEGORIES = 50

#: No NUL characters (PostgreSQL cannot store them). Strings must be UTF-8 text: a lone UTF-16
#: surrogate escape is refused by the store with a 422.
ID_PATTERN = r"^[^\x00]+$"
TEXT_PATTERN = r"^[^\x00]*$"
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


def storable_id(value: str) -> str:
    """A user or item id that a data file can hold too (retraining reads it back from one)."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"id {problem}")
    return value


#: No NUL, no whitespace at either end (data files strip it, so retraining would change it),
#: spelt out so that every regex engine (pydantic's, JSON Schema clients') reads it the same.
_EDGE = r"\x00\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ENTITY_ID_PATTERN = f"^[^{_EDGE}](?:[^\\x00]*[^{_EDGE}])?$"
#: A user or item id: ids that data files cannot hold are refused before they are stored.
EntityId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ENTITY_ID_PATTERN),
    AfterValidator(storable_id),
]
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Scalar = Text | Finite | bool | None


def _whole_number(value: Any) -> Any:
    """JSON's integers, 12.0 included (JSON Schema calls it an integer); not true or "12"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints go before the validator: after it, pydantic leaves them out of the JSON schema.
# Epoch seconds after 1970-01-01 and before 2200: beyond that it is a unit mistake
# (milliseconds); 0 is refused, as an Event's timestamp 0 means "not given: now".
Timestamp = Annotated[int, Field(ge=1, le=MAX_TIMESTAMP), BeforeValidator(_whole_number)]
ListSize = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_whole_number)]
StageName = Literal[
    "seen", "available", "rules", "quality", "fresh", "boost", "calibrated", "mmr", "dpp", "cap",
    "fair", "explore", "diverse",
]  # fmt: skip
#: Query-string form of a stage list: names from StageName, comma-separated; empty: no stage
#: (the model's own order, as `"rerank": []` in a body and `RequestOptions(rerank=())`).
_STAGES = "|".join(get_args(StageName))
STAGES_PATTERN = f"^(({_STAGES})(,({_STAGES}))*)?$"


class _Request(BaseModel):
    # strict: a JSON `false` is not a number and "yes" is not a boolean
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class EventIn(_Request):
    event_id: Id  # idempotency key: a retry with the same id is counted once
    user_id: EntityId
    item_id: EntityId
    type: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)] = "view"
    timestamp: Timestamp | None = None  # default: the server's clock
    value: Finite | None = None


class EventsIn(_Request):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventsOut(_Response):
    accepted: int
    duplicates: int


def _free_names(reserved: frozenset[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A check that free attributes do not reuse a record's own column names (in the tables
    retraining writes they would overwrite the id or a standard field)."""

    def check(attributes: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(reserved & set(attributes))
        if clash:
            raise ValueError(f"attribute names {clash} are reserved (the record's own fields)")
        return attributes

    return check


_ITEM_FIELDS = frozenset({"item_id", "title", "text", "categories", "created_at", "available"})


class ItemIn(_Request):
    title: Annotated[Text, Field(max_length=1000)] | None = None
    text: Annotated[Text, Field(max_length=20_000)] | None = None
    categories: list[Annotated[str, Field(min_length=1, max_length=200, pattern=ID_PATTERN)]] = (
        Field(default_factory=list, max_length=MAX_CATEGORIES)
    )
    created_at: Timestamp | None = None
    available: bool = True
    attributes: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)], Scalar],
        AfterValidator(_free_names(_ITEM_FIELDS)),
    ] = Field(default_factory=dict, max_length=100)


class UserIn(_Request):
    attributes: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)], Scalar],
        AfterValidator(_free_names(frozenset({"user_id"}))),
    ] = Field(default_factory=dict, max_length=100)


class RecordOut(_Response):
    id: str
    kind: Literal["item", "user"]
    deleted: bool


class SessionIn(_Request):
    item_ids: list[Id] = Field(min_length=0, max_length=MAX_SESSION_ITEMS)
    k: ListSize = 10
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_BATCH)
    categories: list[Id] | None = Field(None, max_length=MAX_CATEGORIES)
    rerank: list[StageName] | None = Field(None, max_length=16)
    explain: bool = False


class BecauseOut(_Response):
    item_id: str  # an item of the user's own history
    weight: float  # its share in the score that led to the recommended item


class ExplanationOut(_Response):
    item_id: str
    members: dict[str, float]
    because: list[BecauseOut]
    text: str


class RecommendationOut(_Response):
    item_id: str
    score: float
    title: str | None = None
    explanation: ExplanationOut | None = None


class RecommendationsOut(_Response):
    items: list[RecommendationOut]
    model_version: str
    source: str  # model | session | cold:segment | cold:trending | cold:popular | content
    user_known: bool
    # precomputed: the user's batch list from the store (recsemble batch + load-recs), served
    # because their history is unchanged since; online: computed for this request.
    served_from: Literal["precomputed", "online"] = "online"


class ModelVersionOut(_Response):
    version: str
    current: bool
    created_at: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class RetrainingOut(_Response):
    """The latest POST /admin/train (or scheduled) job since the server started."""

    job: str
    state: Literal["running", "published", "failed"]
    started_at: int
    finished_at: int | None
    version: str | None  # the version it published
    error: str | None  # why it failed (the end of the training process's error output)


class ModelsOut(_Response):
    current: str | None
    serving: str | None
    versions: list[ModelVersionOut]
    retraining: RetrainingOut | None = None


class TrainOut(_Response):
    job: str
    status: str


class HealthOut(_Response):
    status: str
    detail: dict[str, str] = Field(default_factory=dict)


class ErrorBody(_Response):
    code: str
    message: str


class ErrorOut(_Response):
    error: ErrorBody


# -- dashboard reads -------------------------------------------------------------------------
class UserSummaryOut(_Response):
    user_id: str
    history_length: int  # fitted events + live events on model items
    live_events: int  # events since training (from the store)


class UsersOut(_Response):
    total: int  # users matching the prefix; `users` holds the first `limit`
    users: list[UserSummaryOut]


class HistoryEventOut(_Response):
    item_id: str
    title: str | None
    type: str | None  # None: a fitted event whose weight several event types share
    timestamp: int  # epoch seconds
    weight: float
    live: bool  # arrived after training


class HistoryOut(_Response):
    user_id: str
    user_known: bool  # fitted with the model (else known from live events only)
    total: int
    events: list[HistoryEventOut]  # newest first


class MemberItemOut(_Response):
    item_id: str
    title: str | None
    score: float  # the member's own score (its scale, not the ensemble's)
    rank: int


class MemberListOut(_Response):
    label: str
    generator: str
    items: list[MemberItemOut]


class MembersOut(_Response):
    user_id: str
    model_version: str
    ensemble: bool  # False: a single generator, its one list
    members: list[MemberListOut]


class LatencyOut(_Response):
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class RouteLatencyOut(LatencyOut):
    route: str


class RequestCountOut(_Response):
    route: str  # the route template, "unmatched" for unknown paths
    method: str
    status: int
    count: int


class EventCountsOut(_Response):
    accepted: int
    duplicates: int


class StatsOut(_Response):
    serving: str | None
    uptime_s: float
    requests_total: int
    requests: list[RequestCountOut]
    latency: LatencyOut  # every route but the monitoring ones (/stats, /metrics, health, page)
    latency_by_route: list[RouteLatencyOut]
    events: EventCountsOut
    live_users: int
    refresh_pending: int
    report_available: bool  # GET /report serves an HTML report (serve --report)
    # Cacheable recommendation requests answered from the precomputed lists / on line instead.
    precomputed_hits: int
    precomputed_misses: int
    # The event type the dashboard's click buttons post: the served model's lightest weighted
    # type (the server refuses types outside its event_weights), "click" when any type goes.
    click_event_type: str


class VersionSummaryOut(_Response):
    version: str
    created_at: str | None
    current: bool  # the registry's published version
    serving: bool  # the version this process answers with
    metrics: dict[str, float]  # evaluation figures, e.g. "ndcg@10"
    evaluated_as: str | None  # the results.json entry they come from
    decision: str | None  # the evaluation's verdict, when it made one


class VersionsOut(_Response):
    current: str | None
    serving: str | None
    versions: list[VersionSummaryOut]  # oldest first
