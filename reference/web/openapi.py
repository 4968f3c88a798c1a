"""Routes and their OpenAPI description, declared once.

Feature modules declare their routes on an :class:`ApiRoutes` table; the same declaration
registers the aiohttp route and its OpenAPI operation, so ``/openapi.json`` cannot drift from the
router (a test checks every registered route against the document).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web

from reference.web.typedefs import Handler

ParamLocation = Literal["query", "path", "header"]

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the input that was wrong"},
    },
}


@dataclass(frozen=True)
class Param:
    name: str
    location: ParamLocation = "query"
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "schema": dict(self.schema),
            "description": self.description,
        }


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None
    responses: Mapping[int, str] = field(default_factory=dict)
    public: bool = False
    tag: str = ""

    def document(self) -> dict[str, Any]:
        responses: dict[str, Any] = {}
        for status, description in {**self.responses}.items():
            responses[str(status)] = {"description": description}
        for status, description in (
            (400, "bad input"),
            (401, "no or bad token"),
            (404, "not found"),
        ):
            if status == 401 and self.public:
                continue
            responses.setdefault(
                str(status),
                {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            )
        doc: dict[str, Any] = {
            "summary": self.summary,
            "operationId": f"{self.method.lower()}_{self.path.strip('/').replace('/', '_')}",
            "parameters": [p.document() for p in self.params],
            "responses": responses,
        }
        if self.tag:
            doc["tags"] = [self.tag]
        if self.public:
            doc["security"] = []
        if self.body is not None:
            doc["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(self.body)}},
            }
        return doc


def canonical_path(path: str) -> str:
    """``/x/{name:regex}`` -> ``/x/{name}``: the form aiohttp reports and OpenAPI expects."""
    return re.sub(r"\{(\w+):[^{}]+\}", r"{\1}", path)


class ApiRoutes(web.RouteTableDef):
    def __init__(self, tag: str = "") -> None:
        super().__init__()
        self.tag = tag
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        params: Iterable[Param] = (),
        body: Mapping[str, Any] | None = None,
        responses: Mapping[int, str] | None = None,
        public: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method.upper(),
                    canonical_path(path),
                    summary,
                    tuple(params),
                    body,
                    responses or {200: "OK"},
                    public,
                    self.tag,
                )
            )
            self.route(method.upper(), path)(handler)
            return handler

        return register


def public_routes(tables: Iterable[ApiRoutes]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (op.method, op.path) for table in tables for op in table.operations if op.public
    )


def build_document(tables: Iterable[ApiRoutes], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for table in tables:
        for op in table.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = op.document()
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "workspace-bench reference service",
            "version": version,
            "description": "The back end of an AI image/video workspace, as the plan means it.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }
