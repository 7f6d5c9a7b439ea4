"""The FastAPI application: `create_app(settings)`; the model is loaded in `lifespan`.

Routes are thin: parse (schemas.py), call the ServingState / Recommender, shape the answer.
Every error is a JSON body {"error": {"code", "message"}} with a 4xx status; a 5xx means a bug.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from recsemble.errors import RecsembleError
from recsemble.serving import dashboard, dashboard_api, routes
from recsemble.serving.guard import Guard, Keys
from recsemble.serving.retrain import stop_retraining
from recsemble.serving.schemas import ErrorOut, HealthOut
from recsemble.serving.state import Loader, ServeSettings, ServingState, load_recommender
from recsemble.store import unavailable_errors

log = logging.getLogger("recsemble.serving")
#: Every error status a route may answer, documented on every route (JSON ErrorOut body).
ERROR_STATUSES = {
    400: "The body is not valid JSON.",
    401: "No X-API-Key header (when keys are configured).",
    403: "The key may not do this.",
    404: "Unknown id or route.",
    409: "Conflict (e.g. a model version that cannot be served).",
    413: "Body too large.",
    422: "Invalid request.",
    503: "No model loaded yet, or the store cannot answer now (retry).",
}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The app's own Prometheus registry (two apps in one process never share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "recsemble_request_seconds",
            "Request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "recsemble_events_total", "Events received.", ["outcome"], registry=self.registry
        )
        self.version = Gauge(
            "recsemble_model_info", "The model version served (value 1).", ["version"],
            registry=self.registry,
        )  # fmt: skip


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        if any(err.get("type") == "json_invalid" for err in exc.errors()):  # not JSON at all
            return _error(400, "invalid_json", "; ".join(parts))
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 409: "conflict"}.get(
            exc.status_code, "error"
        )
        response = _error(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of every route on this path, not the first's
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(RecsembleError)
    async def domain_error(_: Request, exc: RecsembleError) -> JSONResponse:
        return _error(409, "conflict", str(exc))

    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        said = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        log.warning("store unavailable: %s", said)
        response = _error(503, "store_unavailable", f"the store cannot answer now ({said}); "
                          "retry: events are idempotent by event_id")  # fmt: skip
        response.headers["Retry-After"] = "1"
        return response

    for error in unavailable_errors():  # was a plain-text 500 while the database was down
        app.add_exception_handler(error, store_down)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in _leaf_routes(request.app.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _leaf_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes themselves: FastAPI keeps an included router as one entry holding its own."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not take, or one given twice: `?kk=5` or
    `?limt=5` answered as if absent (10 items, 50 users), and `?k=5&k=6` took one silently."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    given = [name for name, _ in request.query_params.multi_items()]
    unknown = sorted(set(given) - known)
    twice = sorted({name for name in given if given.count(name) > 1} & known)
    if unknown or twice:
        takes = ", ".join(sorted(known)) or "none"
        said = [f"unknown query parameter {name!r}" for name in unknown]
        said += [f"query parameter {name!r} given more than once" for name in twice]
        raise RequestValidationError([
            {"loc": ("query", name), "msg": f"{text} (this route takes: {takes})",
             "type": "extra_forbidden"}
            for name, text in zip(unknown + twice, said, strict=True)
        ])  # fmt: skip


def _query_names(dependant: Any) -> set[str]:
    """The query parameters of a route's FastAPI Dependant and of its dependencies."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def create_app(settings: ServeSettings, loader: Loader = load_recommender) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(settings, loader)
        app.state.serving = state
        try:
            state.start()
        except Exception as exc:  # serve /health/ready (503 with the reason) rather than die
            log.error("start-up: %s", exc)
            # A failure before any swap (the --model copy into the registry: a full disk)
            # would read "no model loaded yet" there, not why.
            state.last_error = state.last_error or f"start-up: {exc}"
        stop_following = state.follow_store()
        schedule = None
        if settings.retrain_every_s:
            from recsemble.serving.retrain import schedule_retraining

            schedule = schedule_retraining(state, settings.retrain_every_s)
        yield
        if schedule is not None:
            schedule.set()
        stop_retraining()  # its child would train on as an orphan
        stop_following()
        state.close()

    # The docs page's Swagger UI files are served by the app itself (fastapi-offline), not a
    # CDN: /docs must work on a machine without internet, as the demo promises.
    app = FastAPIOffline(
        redoc_url=None,
        title="recsemble",
        version="1",
        summary="Ensemble recommendations with real-time updates.",
        lifespan=lifespan,
        responses={
            status: {"model": ErrorOut, "description": text}
            for status, text in ERROR_STATUSES.items()
        },
    )
    app.state.metrics = metrics
    app.state.started = time.monotonic()  # GET /stats: uptime
    _install_error_handlers(app)
    checked = [Depends(known_query_only)]
    app.include_router(routes.router, dependencies=checked)
    app.include_router(dashboard_api.router, dependencies=checked)
    app.include_router(dashboard.router)  # pages and their files: a browser may add a ?v=
    _add_health_and_metrics(app, metrics)
    keys = Keys(settings.api_key, settings.admin_key)
    app.add_middleware(Guard, keys=keys, max_body=settings.max_body_bytes, latency=metrics.latency)
    return app


def _add_health_and_metrics(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/health/live", response_model=HealthOut, tags=["health"])
    def live() -> HealthOut:
        return HealthOut(status="live")

    @app.get(
        "/health/ready",
        response_model=HealthOut,
        responses={503: {"model": HealthOut}},
        tags=["health"],
    )
    def ready(request: Request) -> Any:
        problems = request.app.state.serving.readiness()
        if problems:
            return JSONResponse(HealthOut(status="not ready", detail=problems).model_dump(), 503)
        return HealthOut(status="ready")

    @app.get("/metrics", tags=["health"], response_class=Response)
    def prometheus(request: Request) -> Response:
        state: ServingState = request.app.state.serving
        metrics.version.clear()
        if state.recommender is not None:
            metrics.version.labels(state.recommender.version).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
