"""The workspace page at ``/app/``: the built front end (``frontend/dist``, made by ``make``).

``/app/`` is the plan's page and ``/app/?variant=before`` the pre-plan page it is measured
against (one build serves both). The files are public; the page signs in with a bearer token.
Without a build the routes answer 503 with the command that makes one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from aiohttp import web

from reference.web.errors import json_response
from reference.web.feature import Feature
from reference.web.openapi import ApiRoutes, Param

FRONTEND_DIST: Final = Path(__file__).resolve().parent.parent / "frontend" / "dist"
FILE_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
BUILD_COMMAND: Final = "make frontend (npm ci && npm run build in frontend/)"
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def webapp_feature(dist: Path = FRONTEND_DIST) -> Feature:
    routes = ApiRoutes(tag="webapp")

    def serve(name: str) -> web.StreamResponse:
        if not (dist / "index.html").is_file():
            return json_response(
                {
                    "error": "webapp_not_built",
                    "message": f"the front end is not built ({dist} has no index.html): "
                    f"run {BUILD_COMMAND}",
                },
                status=503,
            )
        path = dist / name
        if not FILE_NAME.fullmatch(name) or not path.is_file():
            return json_response(
                {"error": "not_found", "message": f"no file {name!r} in the front end"}, 404
            )
        # Revalidated on every load (ETag, 304): the bundle's name carries no hash.
        headers = {"Cache-Control": "no-cache"}
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return web.FileResponse(path, headers=headers)

    @routes.operation(
        "GET",
        "/app",
        summary="The workspace page: redirects to /app/",
        public=True,
        responses={302: "to /app/"},
    )
    async def app_root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/app/" + (f"?{request.query_string}" if request.query_string else ""))

    @routes.operation(
        "GET",
        "/app/",
        summary="The workspace page (?variant=before: the pre-plan page; ?token=: sign in)",
        params=[
            Param("variant", schema={"type": "string", "enum": ["after", "before"]}),
            Param("token", description="a bearer token, for scripted sign-in"),
        ],
        public=True,
        responses={200: "text/html", 503: "the front end is not built"},
    )
    async def index(request: web.Request) -> web.StreamResponse:
        return serve("index.html")

    @routes.operation(
        "GET",
        "/app/{name}",
        summary="A file of the built front end (app.js, app.css)",
        params=[Param("name", "path", description="file name")],
        public=True,
        responses={200: "the file", 503: "the front end is not built"},
    )
    async def asset_file(request: web.Request) -> web.StreamResponse:
        return serve(request.match_info["name"])

    return Feature("webapp", routes)


FEATURE: Final = webapp_feature()
