"""A small trained ensemble and real `recsemble serve` processes for the HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from recsemble.cli import app

TINY_ENSEMBLE = """
[ensemble]
validation_folds = 1
members = [
  {model = "pop"},
  {model = "pop-trending"},
  {model = "itemknn", candidates = 40},
  {model = "covisit", candidates = 40},
]
[ensemble.ranker]
kind = "logistic"
"""
READ_KEY = "read-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"


def _cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two trained versions of the tiny ensemble (different seeds of the same data)."""
    root = tmp_path_factory.mktemp("serving-model")
    _cli("data", "synth", "--out", str(root / "data"), "--users", "200", "--items", "150",
         "--interactions", "6000", "--seed", "3")  # fmt: skip
    (root / "tiny.toml").write_text(TINY_ENSEMBLE)
    outs = []
    for name, extra in (("v1", []), ("v2", ["--set", "models.itemknn.neighbors=20"])):
        _cli("train", "--dataset", str(root / "data"), "--config", str(root / "tiny.toml"),
             "--out", str(root / name), *extra)  # fmt: skip
        outs.append(root / name)
    return outs[0], outs[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    store_url: str
    registry: Path
    log: Path

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def get_json(self, path: str, key: str | None = None, **params: Any) -> Any:
        """GET `path`; asserts a 200 and returns the JSON body."""
        with self.client(key) as client:
            response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    tmp: Path,
    model: Path | None,
    *,
    keys: bool = False,
    store_url: str | None = None,
    registry: Path | None = None,
    ready_timeout: float = 120,
    extra: tuple[str, ...] = (),
    port: int | None = None,
    ready_path: str = "/health/ready",
) -> Server:
    """`python -m recsemble serve` on `port` (default: a free one), once `ready_path` answers
    200 (/health/live for a server without a model yet)."""
    port = port or free_port()
    store_url = store_url or f"sqlite:///{tmp / 'store.db'}"
    registry = registry or tmp / "registry"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RECSEMBLE_API_KEY", None)
    env.pop("RECSEMBLE_ADMIN_KEY", None)
    if keys:
        env.update(RECSEMBLE_API_KEY=READ_KEY, RECSEMBLE_ADMIN_KEY=ADMIN_KEY)
    args = [sys.executable, "-m", "recsemble", "serve", "--store", store_url,
            "--registry", str(registry), "--port", str(port)]  # fmt: skip
    if model is not None:
        args += ["--model", str(model)]
    args += list(extra)
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, store_url, registry, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}{ready_path}", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"server not ready in {ready_timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model_dirs: tuple[Path, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    running = start_server(tmp, model_dirs[0])
    yield running
    running.stop()
