"""Supabase's own storage clients, unchanged, against the service over loopback HTTP.

storage3 (supabase-py's) runs in-process; supabase-js's ``@supabase/storage-js`` runs in Node
from the lock file in ``tests/storage_js/`` (``npm ci`` on first use), skipped with a message
where Node or npm is missing. Each call's result is printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError

from reference.app import create_app
from tests.conftest import auth_headers, pool_content, put_objects
from tests.conftest import test_settings as settings_for

OWNER = uuid.UUID("aaaaaaaa-2222-4222-8222-22222222222c")
BUCKET = "image_fast"
PLAIN = f"{OWNER}/job/0.png"
#: Needs percent-encoding in a URL (``#`` and ``?`` cannot be sent by supabase-js at all).
SPACED = f"{OWNER}/job/a photo (final) \u00e9t\u00e9 100%.png"
MISSING = f"{OWNER}/job/none.png"
STORAGE_JS = Path(__file__).parent / "storage_js"
NODE_TIMEOUT_S = 120


@pytest.fixture
async def served(aiohttp_server, seeded_template, tmp_path):
    """(storage URL, {path: sha256 of its bytes}) of the service on a real loopback port."""
    root = tmp_path / "storage"
    await put_objects(seeded_template.dsn, root, [(BUCKET, PLAIN), (BUCKET, SPACED)])
    digests = {path: hashlib.sha256(pool_content(path)).hexdigest() for path in (PLAIN, SPACED)}
    server = await aiohttp_server(create_app(settings_for(seeded_template.dsn, storage_dir=root)))
    return str(server.make_url("/storage/v1/")), digests


async def fetch(url):
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Disposition")


async def test_storage3_works_unchanged(served):
    url, digests = served
    async with AsyncStorageClient(url, auth_headers(OWNER)) as client:
        results = await storage3_calls(client.from_(BUCKET), digests)
    print(json.dumps(results, indent=1, default=str))


async def storage3_calls(bucket, digests):
    results = {}
    for path in (PLAIN, SPACED):
        signed = await bucket.create_signed_url(path, 60)
        status, body, disposition = await fetch(signed["signedURL"])
        results[f"create_signed_url {path!r}"] = status
        assert (status, hashlib.sha256(body).hexdigest(), disposition) == (
            200,
            digests[path],
            None,
        )
    for download, expected in ((True, "attachment;"), ("photo.png", "filename=photo.png")):
        signed = await bucket.create_signed_url(PLAIN, 60, {"download": download})
        status, _, disposition = await fetch(signed["signedURL"])
        results[f"create_signed_url download={download!r}"] = (status, disposition)
        assert status == 200
        assert expected in disposition
    with pytest.raises(StorageApiError) as missing:
        await bucket.create_signed_url(MISSING, 60)
    results["create_signed_url missing"] = missing.value.to_dict()
    assert missing.value.status == "404"

    items = await bucket.create_signed_urls([PLAIN, SPACED, MISSING], 60)
    results["create_signed_urls"] = [(i["path"], i["error"]) for i in items]
    assert [i["error"] is None for i in items] == [True, True, False]
    for item in items[:2]:
        status, body, _ = await fetch(item["signedURL"])
        assert (status, hashlib.sha256(body).hexdigest()) == (200, digests[item["path"]])

    for path in (PLAIN, SPACED):
        body = await bucket.download(path)
        results[f"download {path!r}"] = len(body)
        assert hashlib.sha256(body).hexdigest() == digests[path]
    return results


def _npm_ci() -> None:
    if (STORAGE_JS / "node_modules" / "@supabase" / "storage-js").is_dir():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=STORAGE_JS,
        check=True,
        timeout=NODE_TIMEOUT_S,
        capture_output=True,
    )


async def test_storage_js_works_unchanged(served):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for supabase-js's storage client (CI has them)")
    _npm_ci()
    url, digests = served
    env = {
        **os.environ,
        "STORAGE_URL": url.rstrip("/"),
        "TOKEN": auth_headers(OWNER)["Authorization"].removeprefix("Bearer "),
        "BUCKET": BUCKET,
        "PATHS": json.dumps([PLAIN, SPACED, MISSING]),
    }
    # The server runs in this event loop: wait for Node without blocking it.
    process = await asyncio.create_subprocess_exec(
        "node",
        "check.mjs",
        cwd=STORAGE_JS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_S)
    assert process.returncode == 0, err.decode()
    results = {row.pop("call"): row for row in map(json.loads, out.decode().splitlines())}
    print(json.dumps(results, indent=1))
    ok = {"status": 200, "disposition": None}
    assert results["createSignedUrl"] == {**ok, "sha256": digests[PLAIN]}
    assert results["createSignedUrl (name needing encoding)"] == {**ok, "sha256": digests[SPACED]}
    assert results["createSignedUrl {download: true}"]["disposition"] == "attachment;"
    assert "filename=photo.png" in results['createSignedUrl {download: "photo.png"}']["disposition"]
    assert results["createSignedUrl (missing object)"]["error"] == "Object not found"
    items = results["createSignedUrls"]["items"]
    assert [i["error"] is None for i in items] == [True, True, False]
    assert [i["fetched"]["sha256"] for i in items[:2]] == [digests[PLAIN], digests[SPACED]]
    assert results["download (authenticated)"] == {"sha256": digests[PLAIN]}
    assert results["download (authenticated, name needing encoding)"] == {"sha256": digests[SPACED]}
