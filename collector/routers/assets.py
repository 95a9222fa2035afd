"""The collector's own static files and `/docs`: the dashboard's stylesheet,
and Swagger UI served from the `swagger-ui-bundle` package, so no page loads
anything from another site (the CSP says `'self'` only)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from collector.dashboard.pages import Page
from collector.errors import ApiError

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml"}
OURS = ("dashboard.css", "docs.js", "favicon.svg")
SWAGGER = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


@cache
def _file(path: Path) -> bytes:
    return path.read_bytes()


def _swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def _serve(path: Path) -> Response:
    return Response(_file(path), media_type=TYPES[path.suffix],
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in OURS:
        raise ApiError(404, "not_found", "no such file")
    return _serve(STATIC / name)


@router.get("/static/swagger/{name}")
async def swagger_asset(name: str) -> Response:
    if name not in SWAGGER:
        raise ApiError(404, "not_found", "no such file")
    return _serve(_swagger_dir() / name)


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    return Page.of(request, None).render("docs.html")
