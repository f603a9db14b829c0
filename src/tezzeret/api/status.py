"""The status page at `/` and the runbook at `/runbook`: what an on-call engineer opens first.

Owns: serving `static/status.html` (one file, inline CSS and JS, no build step, no external
assets: it reads `GET /health/tezzeret`, `GET /v1/jobs` and `GET /metrics` and redraws every 2 s)
and rendering `docs/runbook.md` as HTML, with each heading's anchor the one health reasons and
alerts link to (`/runbook#wal-losses`). Must never change anything (GET routes only) and never
load anything from outside the service (the Content-Security-Policy says so to the browser too).
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

# Source checkouts and editable installs (how the forge is deployed here) carry the runbook beside
# the package; a wheel does not, and `/runbook` says where to find it instead.
RUNBOOK_PATH = Path(__file__).resolve().parents[3] / "docs" / "runbook.md"

# Inline script and style are the page itself; everything it fetches is this service.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def anchor(heading: str) -> str:
    """A heading's anchor by the usual Markdown rule: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def _page() -> bytes:
    return resources.files("tezzeret.api").joinpath("static/status.html").read_bytes()


def render_runbook(markdown: str) -> str:
    """The runbook as one HTML page, each heading carrying its anchor as `id`."""
    from markdown_it import MarkdownIt  # rich's own dependency: no new package for one page

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and i + 1 < len(tokens):
            token.attrSet("id", anchor(tokens[i + 1].content))
    body = md.renderer.render(tokens, md.options, {})
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tezzeret runbook</title><link rel=\"icon\" href=\"data:,\">"
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#1f2328}"
        "code,pre{background:#f6f8fa}pre{padding:.6em;overflow-x:auto}h2{border-top:1px solid #d0d7de;"
        "padding-top:.8em}:target{background:#fff8c5}</style></head><body>"
        f"<p><a href=\"/\">← status</a> · source: <code>{html.escape(str(RUNBOOK_PATH))}</code></p>"
        f"{body}</body></html>"
    )


def register(app: FastAPI) -> None:
    """Add `GET /` (the status page) and `GET /runbook` to `app`."""

    @app.get("/", include_in_schema=False)
    async def status_page(request: Request) -> Response:
        request.state.action = "status_page"
        return HTMLResponse(_page(), headers=_HEADERS)

    @app.get("/runbook", include_in_schema=False)
    async def runbook(request: Request) -> Any:
        request.state.action = "runbook"
        try:
            text = RUNBOOK_PATH.read_text(encoding="utf-8")
        except OSError:
            request.state.error_code = "NOT_FOUND"
            return JSONResponse(
                {"code": "NOT_FOUND", "message": "this install has no runbook beside it; read docs/runbook.md "
                 "in Tezzeret's source"},
                status_code=404,
            )
        return HTMLResponse(render_runbook(text), headers=_HEADERS)
