"""API docs that work offline under the server's CSP: Swagger UI at /docs, ReDoc at /redoc.

FastAPI's own pages load their scripts from a CDN and start them with an inline script,
both of which the Content-Security-Policy (security.py) refuses, so they were blank. Here
the viewers come from the fastapi-offline package's copies (found without importing it)
and a served script starts each one on the schema URL the page names.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)

CACHE = {"cache-control": "max-age=86400"}
# The only files served from the package's folder, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}

SWAGGER_STARTER = """\
// Starts Swagger UI on the schema the page names; a served file, as the CSP allows no
// inline script.
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // no badge fetched from another site
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

REDOC_STARTER = """\
// Starts ReDoc on the schema the page names; a served file, as the CSP allows no inline
// script. Its search runs in a worker made from a blob: URL, which the CSP refuses too.
const root = document.getElementById("redoc");
Redoc.init(root.dataset.openapiUrl, { disableSearch: true }, root);
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{root}/favicon.ico">
{stylesheet}</head>
<body>
<div id="{element}" data-openapi-url="{schema}"></div>
<script src="{root}/docs/assets/{viewer}"></script>
<script src="{root}/docs/{starter}"></script>
</body>
</html>
"""


def assets_dir() -> Path | None:
    """The fastapi-offline package's static folder, or None when it is not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if folder.is_dir() else None


def _page(request: Request, title: str, element: str, viewer: str, starter: str) -> Response:
    root = html.escape(request.scope.get("root_path", ""))
    schema = html.escape(root + (request.app.openapi_url or "/openapi.json"))
    stylesheet = (
        f'<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">\n'
        if element == "swagger-ui"
        else ""
    )
    return HTMLResponse(
        PAGE.format(
            title=html.escape(f"{request.app.title} API: {title}"),
            root=root,
            stylesheet=stylesheet,
            element=element,
            schema=schema,
            viewer=viewer,
            starter=starter,
        )
    )


@router.get("/docs")
async def swagger_page(request: Request) -> Response:
    return _page(request, "Swagger UI", "swagger-ui", "swagger-ui-bundle.js", "swagger.js")


@router.get("/redoc")
async def redoc_page(request: Request) -> Response:
    return _page(request, "ReDoc", "redoc", "redoc.standalone.js", "redoc.js")


@router.get("/docs/swagger.js")
async def swagger_starter() -> Response:
    return Response(SWAGGER_STARTER, media_type="text/javascript", headers=CACHE)


@router.get("/docs/redoc.js")
async def redoc_starter() -> Response:
    return Response(REDOC_STARTER, media_type="text/javascript", headers=CACHE)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    folder = assets_dir()
    if name not in ASSETS:
        return JSONResponse({"detail": f"no docs asset {name!r}"}, status_code=404)
    if folder is None or not (folder / name).is_file():
        detail = "the fastapi-offline package is not installed: pip install fastapi-offline"
        return JSONResponse({"detail": detail}, status_code=404)
    return FileResponse(folder / name, media_type=ASSETS[name], headers=CACHE)
