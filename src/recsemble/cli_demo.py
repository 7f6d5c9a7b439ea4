"""`recsemble demo`: the whole engine in one command, the way `make demo` runs it.

Generate the synthetic demo data (or use --dataset), train the ensemble on all of it, evaluate
it against its members and the popularity baseline under the protocol, write the HTML report,
then serve the API with the dashboard and the report, check that every URL and the suggested
curl commands answer, print them, and keep serving until Ctrl-C (--no-keep-serving: stop once
checked, for scripts and tests). A second run on the same --out keeps the store and the
registry, as a restarted `recsemble serve` does: the events posted to the earlier run's server
were acknowledged, so they are replayed onto the new model, never deleted unasked (--fresh
starts over). Registered on the main app by cli.py.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recsemble.cli_options import DataDirOpt, SetOpt

if TYPE_CHECKING:
    from recsemble.config import RecsembleConfig

DEFAULT_CONFIG = Path("configs/demo.toml")
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Paths:
    """Where the demo writes what, under one folder."""

    data: Path
    model: Path
    results: Path
    report: Path
    registry: Path
    store: Path
    log: Path

    @classmethod
    def under(cls, root: Path) -> Paths:
        return cls(
            data=root / "data",
            model=root / "model",
            results=root / "results.json",
            report=root / "report.html",
            registry=root / "registry",
            store=root / "store.db",
            log=root / "server.log",
        )


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path(
        "out/demo"
    ),
    dataset: Annotated[
        str | None,
        typer.Option(
            help="A dataset name (e.g. ml-100k) or path instead of the synthetic demo data.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    config_path: Annotated[
        Path | None,
        typer.Option("--config", help=f"Config file (default {DEFAULT_CONFIG} when present)."),
    ] = None,
    sets: SetOpt = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    keep_serving: Annotated[
        bool, typer.Option(help="Keep the server up after the checks (Ctrl-C stops it).")
    ] = True,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start over: delete the store (with the events posted to an earlier run's "
            "server) and the registry under --out first. Without it they are kept.",
        ),
    ] = False,
) -> None:
    """Data -> train -> evaluate -> report -> serve (dashboard, report, API docs)."""
    from recsemble.cli import _errors_exit, _resolve, console, err_console, say
    from recsemble.cli_evaluate import evaluate_with_progress
    from recsemble.cli_train import train_and_save
    from recsemble.report import write_report

    paths = Paths.under(out)
    start = time.perf_counter()
    with _errors_exit():
        if config_path is None and DEFAULT_CONFIG.exists():
            config_path = DEFAULT_CONFIG
        data = dataset or _synthetic_data(paths.data)
        flags = {"data.dataset": data, "data.data_dir": str(data_dir) if data_dir else None}
        config = _resolve(config_path, sets, **flags).config
        _step("1/4 train the ensemble on all the data")
        console.print(train_and_save(config, "ensemble", paths.model))
        _step("2/4 evaluate it against its members and the popularity baseline")
        outcome = evaluate_with_progress(_with_members(config))
        outcome.write_json(paths.results)
        _print_tables(outcome.results, config)
        _step("3/4 write the report")
        write_report(outcome.results, paths.report)
        say(f"report written to {paths.report}")
    _step("4/4 serve the API, the dashboard and the report")
    server = _start_server(paths, _free_port(port), fresh)
    try:
        urls, curls = _check(server, paths, outcome.results)
        err_console.print(f"demo ready in {time.perf_counter() - start:.0f} s")
        _print_urls(urls, curls)
        if keep_serving:
            say(f"serving until Ctrl-C (log: {paths.log})")
            _stop_on_signals()
            server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _stop_on_signals() -> None:
    """Ctrl-C and `kill` both end the demo through its cleanup (which stops the server), also
    when it was started in the background, where SIGINT arrives ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _step(text: str) -> None:
    from recsemble.cli import err_console

    err_console.rule(f"[bold]{text}")


def _synthetic_data(folder: Path) -> str:
    from recsemble.data.synthetic import SyntheticConfig, write_synthetic

    if not (folder / "interactions.parquet").exists():
        _step("0/4 generate the synthetic demo data")
        write_synthetic(folder, SyntheticConfig())
    return str(folder)


def _with_members(config: RecsembleConfig) -> RecsembleConfig:
    """The evaluation the report needs: the ensemble, each of its serving members alone, the
    baseline, and the ensemble's analysis (overlap, marginal gains, pruning, calibration)."""
    members = [m.model for m in config.ensemble.members if m.label not in config.ensemble.prune]
    wanted = dict.fromkeys(["ensemble", *members, *config.evaluate.models])
    models = [name for name in wanted if name != config.evaluate.baseline]
    evaluate = config.evaluate.model_copy(update={"models": models, "analyze": True})
    return config.model_copy(update={"evaluate": evaluate})


def _print_tables(results: dict[str, Any], config: RecsembleConfig) -> None:
    from recsemble.cli import console
    from recsemble.cli_tables import metrics_table

    plain = {n: e for n, e in results.items() if e["meta"]["role"] != "variant"}
    console.print(metrics_table(plain, config.protocol.k[0]))
    decision = results.get("ensemble", {}).get("decision")
    if decision:
        console.print(decision["statement"], markup=False, highlight=False, soft_wrap=True)


@dataclass
class _Server:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _free_port(wanted: int) -> int:
    from recsemble.cli import err_console

    for port in (wanted, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                err_console.print(f"[yellow]port {wanted} is in use: serving on another one[/]")
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def _start_server(paths: Paths, port: int, fresh: bool = False) -> _Server:
    """`recsemble serve` as a child process, on the registry and store of an earlier run
    (a restart: accepted events are kept) or, with `fresh`, on new ones."""
    import shutil

    from recsemble.errors import RecsembleError

    if fresh:
        shutil.rmtree(paths.registry, ignore_errors=True)
        for path in (paths.store, *_sqlite_companions(paths.store)):
            path.unlink(missing_ok=True)
    args = [sys.executable, "-m", "recsemble", "serve", "--model", str(paths.model)]
    args += ["--registry", str(paths.registry), "--store", f"sqlite:///{paths.store}"]
    args += ["--results", str(paths.results), "--report", str(paths.report), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSEMBLE_")}
    log = paths.log.open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = _Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RecsembleError(f"the server stopped: see {paths.log}")
        if _status(f"{server.url}/health/ready") == 200:
            return server
        time.sleep(0.3)
    server.stop()
    raise RecsembleError(f"the server was not ready in {READY_TIMEOUT_S:.0f} s: see {paths.log}")


def _sqlite_companions(store: Path) -> list[Path]:
    """The WAL and shared-memory files beside an SQLite file: a WAL left behind would be
    replayed into the new, empty store."""
    return [store.with_name(store.name + suffix) for suffix in ("-wal", "-shm")]


def _status(url: str, method: str = "GET", body: bytes | None = None) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _check(
    server: _Server, paths: Paths, results: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """Every URL and curl line the demo prints, tried once; a failure stops the demo."""
    from recsemble.errors import RecsembleError

    urls = {
        "dashboard": f"{server.url}/dashboard",
        "report": f"{server.url}/report",
        "API docs": f"{server.url}/docs",
    }
    user, item = _example_ids(paths.model)
    tries = [
        ("GET", f"{server.url}/users/{user}/recommendations?k=5&explain=true", None),
        ("POST", f"{server.url}/events", _event(user, item, "demo-check")),
        ("GET", f"{server.url}/items/{item}/similar?k=5", None),
    ]
    failed = [name for name, url in urls.items() if _status(url) != 200]
    failed += [url for method, url, body in tries if _status(url, method, _bytes(body)) != 200]
    if failed:
        raise RecsembleError(f"not answering: {', '.join(failed)} (see {paths.log})")
    # The printed event has its own id: the check's event would make it a duplicate.
    tries[1] = ("POST", tries[1][1], _event(user, item, "demo-1"))
    return urls, [_curl(method, url, body) for method, url, body in tries]


def _event(user: str, item: str, event_id: str) -> str:
    event = {"event_id": event_id, "user_id": user, "item_id": item, "type": "view"}
    return json.dumps({"events": [event]})


def _bytes(body: str | None) -> bytes | None:
    return body.encode() if body is not None else None


def _curl(method: str, url: str, body: str | None) -> str:
    if body is None:
        return f"curl {shlex.quote(url)}"
    return (
        f"curl -X {method} {shlex.quote(url)} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}"
    )


def _example_ids(model: Path) -> tuple[str, str]:
    """A known user with a history and a popular item, from the saved model's id files."""
    import polars as pl

    users = pl.read_parquet(model / "users.parquet", glob=False)
    items = pl.read_parquet(model / "items.parquet", glob=False)
    return str(users["user_id"][len(users) // 2]), str(items["item_id"][0])


def _print_urls(urls: dict[str, str], curls: list[str]) -> None:
    from recsemble.cli import console

    console.rule("[bold green]recsemble demo is up")
    for name, url in urls.items():
        console.print(f"  {name:10s} {url}")
    console.print("\nTry:")
    for line in curls:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
