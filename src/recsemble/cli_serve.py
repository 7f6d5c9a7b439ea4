"""`recsemble serve`: the HTTP API over a trained model, a store and a model registry.

Registered on the main app by cli.py. Without API keys the server only listens on 127.0.0.1
(and says so), whatever --host asks: an open recommender must not face a network by accident.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from recsemble.errors import ConfigError

LOCALHOST = "127.0.0.1"
MAX_REQUEST_HEAD = 64 * 1024  # request line + headers; the routes' query limits fit in it


def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Folder written by `recsemble train`; registered and published unless the "
            "registry holds it already (then the current version serves).",
        ),
    ] = None,
    store: Annotated[
        str, typer.Option(help="sqlite:///path.db (default) or postgresql://user@host/db.")
    ] = "sqlite:///out/serve/store.db",
    registry: Annotated[Path, typer.Option(help="Model registry folder.")] = Path("out/registry"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = LOCALHOST,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(help="Read key (default $RECSEMBLE_API_KEY).", show_default=False),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(help="Write/admin key (default $RECSEMBLE_ADMIN_KEY).", show_default=False),
    ] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, help="Largest request body, bytes.")
    ] = 1_000_000,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML config: \\[rerank] stages and settings.", show_default=False
        ),
    ] = None,
    train_config: Annotated[
        Path | None,
        typer.Option(help="Config file for retraining (POST /admin/train).", show_default=False),
    ] = None,
    retrain_every: Annotated[
        float | None,
        typer.Option(  # 0 or less was a retraining after another without a pause
            min=1.0, help="Retrain in the background every N seconds.", show_default=False
        ),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="results.json of `recsemble evaluate`: the --model entry's headline figures "
            "and decision are stored with the version it registers (shown on the dashboard).",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="HTML report (`recsemble report`) to serve at /report.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recommendations over HTTP (OpenAPI at /docs and /openapi.json, dashboard at
    /dashboard)."""
    import uvicorn

    from recsemble import config as cfg
    from recsemble.cli import _errors_exit, err_console
    from recsemble.serving.app import create_app
    from recsemble.serving.state import ServeSettings

    read_key = api_key or os.environ.get("RECSEMBLE_API_KEY") or None
    write_key = admin_key or os.environ.get("RECSEMBLE_ADMIN_KEY") or None
    host = _listening_host(host, bool(read_key or write_key))
    with _errors_exit():
        config = cfg.resolve(config_path).config if config_path else None
        if train_config is not None:  # retraining reads it much later: a bad one fails now
            cfg.resolve(train_config)
        model_metrics = _model_metrics(results, model)
        _check_start(store, model, registry)
        _check_port(host, port)  # else "serving on ..." was printed, then the bind failed
    settings = ServeSettings(
        store_url=store,
        registry_dir=registry,
        model_dir=model,
        api_key=read_key,
        admin_key=write_key,
        max_body_bytes=max_body,
        retrain_every_s=retrain_every,
        train_args=["--config", str(train_config)] if train_config else [],
        config=config,
        model_metrics=model_metrics,
        report_path=report.resolve() if report is not None else None,
    )
    err_console.print(
        f"recsemble serving on http://{host}:{port} (dashboard: /dashboard, docs: /docs)"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # keys travel in headers, and request lines are not worth the time
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )


def _check_port(host: str, port: int) -> None:
    """RecsembleError when `host:port` cannot be listened on (in use, or not this machine's)."""
    import socket

    from recsemble.errors import RecsembleError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise RecsembleError(
            f"cannot listen on {host}:{port} ({why}): another server may hold the port; "
            "pick another with --port"
        ) from None


def _check_start(store_url: str, model: Path | None, registry: Path) -> None:
    """What would fail the server's start-up, as one line before it starts: the store (a bad
    URL, an unreachable PostgreSQL), a --model folder that holds no saved model and a
    --registry folder that cannot be made."""
    from recsemble.errors import DataError, RecsembleError
    from recsemble.ranking.model_folder import MANIFEST
    from recsemble.registry import ModelRegistry
    from recsemble.store import open_store

    if model is not None and not (model / MANIFEST).is_file():
        raise DataError(f"--model: no {MANIFEST}: not a folder written by `recsemble train`",
                        source=str(model))  # fmt: skip
    ModelRegistry(registry)
    try:
        open_store(store_url).close()
    except ConnectionError as exc:
        raise RecsembleError(f"--store: {exc}") from None


def _listening_host(host: str, keys: bool) -> str:
    """`host`, or 127.0.0.1 when no API key is configured (and say so)."""
    from recsemble.cli import err_console

    if not keys and host != LOCALHOST:
        err_console.print(
            f"[yellow]no API keys configured: listening on {LOCALHOST} only, not {host}[/]"
        )
        return LOCALHOST
    if not keys:
        err_console.print(f"no API keys configured: listening on {LOCALHOST} only")
    return host


def _model_metrics(results: Path | None, model: Path | None) -> dict[str, Any] | None:
    """The evaluation summary stored with the --model version (None without --results)."""
    if results is None:
        return None
    if model is None:
        raise ConfigError("--results describes the --model it comes with: pass both")
    from recsemble.serving.summary import headline_figures

    return headline_figures(results, model)
