"""/openapi.json documents every route the app registers, with its parameters."""

from __future__ import annotations

from reference.app import FEATURES, create_app
from reference.settings import Settings
from reference.system import OPENAPI
from reference.web.openapi import public_routes


def registered(app):
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        yield route.method, resource.canonical


def test_every_registered_route_is_documented():
    app = create_app(Settings())
    app.freeze()
    doc = app[OPENAPI]
    routes = list(registered(app))
    assert ("GET", "/v1/workspace") in routes
    assert ("GET", "/storage/v1/object/sign/{bucket}/{path}") in routes
    for method, path in routes:
        assert path in doc["paths"], path
        assert method.lower() in doc["paths"][path], (method, path)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(routes)


def test_path_parameters_are_declared():
    app = create_app(Settings())
    doc = app[OPENAPI]
    for path, ops in doc["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for op in ops.values():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == names, path


def test_storage_routes_are_public_and_workspace_is_not():
    public = public_routes(f.routes for f in FEATURES)
    assert ("GET", "/storage/v1/object/sign/{bucket}/{path}") in public
    assert ("POST", "/storage/v1/object/sign/{bucket}") in public
    assert ("GET", "/v1/workspace") not in public
    assert ("GET", "/v1/assets/{asset_id}") not in public


async def test_served_document_matches(make_client, database):
    client = await make_client(database.dsn)
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert {p for _, p in registered(client.app)} <= set(doc["paths"])
