"""One ASGI middleware in front of every route: API keys, body size, latency metrics.

- Keys: with keys configured, /health/* is open, and so are GETs of the dashboard's static
  files, the report and the API docs (they hold no data: the page asks the API with the key
  typed into it); reads (GET/HEAD, and POST /recommendations, an anonymous session's list)
  need the read key (or the admin key), and writes and /admin/* need the admin key: missing
  key 401, wrong key 403. Keys are compared in constant time and never logged.
- Body size: a declared Content-Length over the limit is refused before reading; a body that
  streams past the limit (chunked) is cut off with 413 too.
- Ids with "/": a path segment's encoded slash (%2F) stays inside the segment (as NUL, which
  no id may hold; the routes' PathId turns it back), so such an id reaches its route.
- Metrics: request latency per route template, method and status (Prometheus histogram).
Pure ASGI (no BaseHTTPMiddleware): it adds microseconds, not a task per request.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from prometheus_client import Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PREFIXES = ("/health/",)
#: Static pages, open to GET/HEAD only.
OPEN_PAGES = frozenset({"/", "/dashboard", "/report", "/docs", "/openapi.json"})
OPEN_PAGE_PREFIXES = ("/dashboard/", "/docs/", "/static-offline-docs/")
READ_METHODS = ("GET", "HEAD")
#: Reads sent as POST (their query is a body).
READ_POSTS = frozenset({"/recommendations"})
#: Stands for an encoded "/" inside a path segment until the route reads the id.
SLASH_IN_SEGMENT = "\x00"


@dataclass(frozen=True)
class Keys:
    read: str | None
    admin: str | None

    @property
    def enabled(self) -> bool:
        return bool(self.read or self.admin)


def _matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def required_role(path: str, method: str) -> str | None:
    """None (open), "read" or "admin" for a request."""
    if path.startswith(OPEN_PREFIXES):
        return None
    if method in READ_METHODS and (path in OPEN_PAGES or path.startswith(OPEN_PAGE_PREFIXES)):
        return None
    if path.startswith("/admin"):
        return "admin"
    if method in READ_METHODS or (method == "POST" and path in READ_POSTS):
        return "read"
    return "admin"


def routing_path(raw_path: bytes) -> str:
    """The request path decoded segment by segment, an encoded "/" kept inside its segment
    (as SLASH_IN_SEGMENT): "/users/a%2Fb/history" routes to the user "a/b"."""
    segments = raw_path.decode("latin-1").split("/")
    return "/".join(unquote(part).replace("/", SLASH_IN_SEGMENT) for part in segments)


def key_status(keys: Keys, headers: dict[bytes, bytes], path: str, method: str) -> int:
    """200 when the request may pass, else 401 (no key) or 403 (wrong key for the route)."""
    role = required_role(path, method) if keys.enabled else None
    if role is None:
        return 200
    raw = headers.get(b"x-api-key")
    if raw is None:
        return 401
    given = raw.decode("latin-1")
    if _matches(given, keys.admin):
        return 200
    return 200 if role == "read" and _matches(given, keys.read) else 403


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, keys: Keys, max_body: int, latency: Histogram) -> None:
        self.app, self.keys, self.max_body, self.latency = app, keys, max_body, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        raw = scope.get("raw_path")
        if raw and b"%2f" in raw.lower():
            scope = {**scope, "path": routing_path(raw)}
        status_box = [500]

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, headers, receive, send_tracked)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.latency.labels(template, scope["method"], str(status_box[0])).observe(
                time.perf_counter() - start
            )

    async def _guarded(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        status = key_status(self.keys, headers, scope["path"], scope["method"])
        if status != 200:
            reason = "missing X-API-Key header" if status == 401 else "this key may not do that"
            await send_error(send, status, "unauthorized" if status == 401 else "forbidden", reason)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await send_error(send, 413, "body_too_large", f"body over {self.max_body} bytes")
            return
        seen, too_large = 0, False

        async def receive_limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:  # end the body here; the answer becomes a 413
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def send_checked(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await send_error(send, 413, "body_too_large", f"body over {self.max_body} bytes")

        await self.app(scope, receive_limited, send_checked)
