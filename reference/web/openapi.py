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

from reference.settings import Settings
from reference.web.typedefs import Handler

ParamLocation = Literal["query", "path", "header"]
ErrorStyle = Literal["api", "storage"]
#: A schema, or one that depends on the settings (the limits a deployment configures).
Schema = Mapping[str, Any] | Callable[[Settings], Mapping[str, Any]]
#: A response: its description, or (description, schema[, media type]).
ResponseSpec = str | tuple[str, Schema] | tuple[str, Schema, str]

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the input that was wrong"},
    },
}
STORAGE_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "storage-api's error shape; statusCode may differ from the HTTP status",
    "required": ["statusCode", "error", "message"],
    "properties": {
        "statusCode": {"type": "string"},
        "code": {"type": "string"},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}
ERROR: Final = {"$ref": "#/components/schemas/Error"}
#: Refusals any operation may answer, whatever its input.
COMMON_ERRORS: Final = {
    400: "bad input (the field is named)",
    401: "no bearer token, or one that does not verify",
    404: "not found, or not the caller's",
    414: "request target over 8190 bytes",
    431: "a header over 8190 bytes, or over 32 KiB of headers",
    503: "the database is down or too slow (error database_unavailable or database_timeout), "
    "or, on the organize routes, the caller's near-duplicate index is still being built "
    "(organize_index_building); with Retry-After",
}


def resolve(schema: Schema, settings: Settings) -> dict[str, Any]:
    return dict(schema(settings) if callable(schema) else schema)


def _error_ref(*names: str) -> dict[str, Any]:
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in names]
    return {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}}


@dataclass(frozen=True)
class Param:
    name: str
    location: ParamLocation = "query"
    schema: Schema = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""

    def document(self, settings: Settings) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "schema": resolve(self.schema, settings),
            "description": self.description,
        }


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    responses: Mapping[int, ResponseSpec] = field(default_factory=dict)
    public: bool = False
    tag: str = ""
    errors: ErrorStyle = "api"

    def document(self, settings: Settings) -> dict[str, Any]:
        responses: dict[str, Any] = {}
        for status, spec in self.responses.items():
            responses[str(status)] = _response(spec, settings)
        for status, description in COMMON_ERRORS.items():
            if status == 401 and self.public:
                continue
            # The router's own refusals (no such path) come before storage's shape applies.
            names = ("StorageError", "Error") if self.errors == "storage" else ("Error",)
            responses.setdefault(
                str(status), {"description": description, "content": _error_ref(*names)}
            )
        if self.body is not None:
            responses.setdefault(
                "413",
                {
                    "description": "body over 8 MiB, or too many items",
                    "content": _error_ref("Error"),
                },
            )
        doc: dict[str, Any] = {
            "summary": self.summary,
            "operationId": f"{self.method.lower()}_{self.path.strip('/').replace('/', '_')}",
            "parameters": [p.document(settings) for p in self.params],
            "responses": responses,
        }
        if self.tag:
            doc["tags"] = [self.tag]
        if self.public:
            doc["security"] = []
        if self.body is not None:
            doc["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": resolve(self.body, settings)}},
            }
        return doc


def _response(spec: ResponseSpec, settings: Settings) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"description": spec}
    description, schema = spec[0], spec[1]
    media = spec[2] if len(spec) == 3 else "application/json"
    return {"description": description, "content": {media: {"schema": resolve(schema, settings)}}}


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
        body: Schema | None = None,
        responses: Mapping[int, ResponseSpec] | None = None,
        public: bool = False,
        errors: ErrorStyle = "api",
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
                    errors,
                )
            )
            self.route(method.upper(), path)(handler)
            return handler

        return register


def public_routes(tables: Iterable[ApiRoutes]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (op.method, op.path) for table in tables for op in table.operations if op.public
    )


def build_document(tables: Iterable[ApiRoutes], version: str, settings: Settings) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for table in tables:
        for op in table.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = op.document(settings)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "workspace-bench reference service",
            "version": version,
            "description": "The back end of an AI image/video workspace, as the plan means it.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "StorageError": STORAGE_ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }
