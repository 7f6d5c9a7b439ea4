"""Open-loop load test of a running `recsemble serve`: a fixed request rate, whatever the latency.

Requests start on a fixed schedule (rps), so a slow server cannot slow the test down and hide
its own latency (no coordinated omission). Mix: `--write-share` of the requests are POST
/events (one event each, unique ids), the rest GET /users/{id}/recommendations?k=10, of which
`--known-share` ask for users the model knows (ids read from the model's ids.json) and the rest
for made-up users. `--swap-every S` also publishes the registry's versions in turn every S
seconds (hot swap under load; needs the admin key). Prints p50, p95, p99 and errors per kind.

    python benchmarks/load_test.py --url http://127.0.0.1:8000 --rps 300 --seconds 60 \
        --model out/model [--write-share 0.1] [--api-key K --admin-key A] [--swap-every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np


def _known_ids(model: Path | None) -> tuple[list[str], list[str]]:
    if model is None:
        return [], []
    ids = json.loads((model / "ids.json").read_text())
    return [str(u) for u in ids["users"]], [str(i) for i in ids["items"]]


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: a load generator written with
    a general client spends its CPU in the client (httpx's pool is quadratic in waiting
    requests), which would measure the client, not the server, on a 2-core machine."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users, self.items = _known_ids(args.model)
        self.rng = random.Random(args.seed)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.examples: dict[str, str] = {}
        self.event_counter = 0
        url = urlsplit(args.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.read_headers = {"X-API-Key": args.api_key} if args.api_key else {}
        self.write_headers = {"X-API-Key": args.admin_key} if args.admin_key else self.read_headers

    def _request(self) -> tuple[str, str, str, bytes | None]:
        if self.rng.random() < self.args.write_share:
            self.event_counter += 1
            user = (
                self.rng.choice(self.users)
                if self.users
                else f"load-user-{self.rng.randrange(1000)}"
            )
            item = self.rng.choice(self.items) if self.items else "1"
            event = {"event_id": f"load-{self.args.seed}-{time.time_ns()}-{self.event_counter}",
                     "user_id": user, "item_id": item, "type": "view"}  # fmt: skip
            return "write", "POST", "/events", json.dumps({"events": [event]}).encode()
        if self.users and self.rng.random() < self.args.known_share:
            user = self.rng.choice(self.users)
        else:
            user = f"unknown-{self.rng.randrange(10**9)}"
        return "read", "GET", f"/users/{quote(user)}/recommendations?k=10", None

    async def _worker(
        self, queue: asyncio.Queue[tuple[float, tuple[str, str, str, bytes | None]] | None]
    ) -> None:
        connection = Connection(self.host, self.port)
        while (job := await queue.get()) is not None:
            scheduled, (kind, method, path, body) = job
            headers = self.write_headers if kind == "write" else self.read_headers
            try:
                status, payload = await connection.request(method, path, body, headers)
                ok = status < 400
                if not ok:
                    self.examples.setdefault(kind, f"{status} {payload[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                ok = False
                connection.close()
                self.examples.setdefault(kind, f"{type(exc).__name__}: {exc}")
            # From the scheduled start: time spent waiting for a free connection counts too.
            self.latency[kind].append(time.perf_counter() - scheduled)
            if not ok:
                self.errors[kind] += 1
        connection.close()

    async def _swapper(self, stop: float) -> None:
        headers = {"X-API-Key": self.args.admin_key} if self.args.admin_key else {}
        connection = Connection(self.host, self.port)  # one per request: the server closes
        _, listing = await connection.request("GET", "/admin/models", None, headers)  # idle ones
        connection.close()
        versions = [v["version"] for v in json.loads(listing)["versions"]]
        turn = 0
        while time.perf_counter() + self.args.swap_every < stop and len(versions) > 1:
            await asyncio.sleep(self.args.swap_every)
            version = versions[turn % len(versions)]
            turn += 1
            connection = Connection(self.host, self.port)
            began = time.perf_counter()
            status, payload = await connection.request(
                "POST", f"/admin/models/{version}/publish", b"", headers
            )
            connection.close()
            self.latency["swap"].append(time.perf_counter() - began)
            if status >= 400:
                self.errors["swap"] += 1
                self.examples.setdefault("swap", f"{status} {payload[:200]!r}")

    async def run(self) -> None:
        queue: asyncio.Queue[tuple[float, tuple[str, str, str, bytes | None]] | None] = (
            asyncio.Queue()
        )
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.args.connections)]
        interval = 1.0 / self.args.rps
        start = time.perf_counter()
        stop = start + self.args.seconds
        swapper = asyncio.create_task(self._swapper(stop)) if self.args.swap_every else None
        for i in range(int(self.args.rps * self.args.seconds)):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((scheduled, self._request()))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        if swapper is not None:
            await swapper

    def report(self) -> int:
        total_errors = 0
        header = ("kind", "requests", "p50 ms", "p95 ms", "p99 ms", "errors")
        print("{:6s} {:>9s} {:>8s} {:>8s} {:>8s} {:>7s}".format(*header))
        for kind in ("read", "write", "swap"):
            values = np.array(self.latency.get(kind, [])) * 1000
            if values.size == 0:
                continue
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            errors = self.errors.get(kind, 0)
            total_errors += errors
            print(f"{kind:6s} {values.size:9d} {p50:8.2f} {p95:8.2f} {p99:8.2f} {errors:7d}")
        if self.latency.get("swap"):
            print("(swap: publish calls, each timed from request to answer: load + warm)")
        for kind, example in self.examples.items():
            print(f"first {kind} error: {example}")
        print("command:", shlex.join([sys.executable, *sys.argv]))
        return 1 if total_errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rps", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model", type=Path, default=None, help="model folder (for user ids)")
    parser.add_argument("--write-share", type=float, default=0.0)
    parser.add_argument("--known-share", type=float, default=0.9)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--admin-key", default=None)
    parser.add_argument("--swap-every", type=float, default=0.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    load = Load(args)
    asyncio.run(load.run())
    return load.report()


if __name__ == "__main__":
    raise SystemExit(main())
