"""The web dashboard (GET /dashboard, static files shipped in serving/dashboard/) and the
evaluation report (GET /report, the HTML file `serve --report` names).

Both are open like /health (guard.py): the page holds no data, it asks the API with the key
the user types into it. The dashboard's Content-Security-Policy allows nothing but this
server: no CDN, no inline script, no other origin, so the page works offline and a stray
external URL fails loudly in the browser console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(include_in_schema=False)
DASHBOARD_DIR = Path(__file__).with_name("dashboard")
#: The dashboard's files by URL name, with their media types; nothing else is served.
ASSETS = {
    "api.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: Always revalidated: a restarted server with a newer dashboard is never shown an old one.
NO_CACHE = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
def dashboard() -> FileResponse:
    return FileResponse(
        DASHBOARD_DIR / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE
    )


@router.get("/dashboard/{asset}")
def dashboard_asset(asset: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(404, f"no dashboard file {asset!r}")
    return FileResponse(DASHBOARD_DIR / asset, media_type=media_type, headers=NO_CACHE)


@router.get("/report")
def report(request: Request) -> FileResponse:
    """The HTML report given to `serve --report` (read at each request: a regenerated report
    shows without a restart)."""
    path: Path | None = request.app.state.serving.settings.report_path
    if path is None:
        raise HTTPException(404, "no report: start the server with --report report.html")
    if not path.is_file():
        raise HTTPException(404, f"the report file {path} is gone")
    return FileResponse(path, media_type="text/html; charset=utf-8")
