"""Property-based API fuzzing (schemathesis) of every operation of /openapi.json, over real HTTP.

Bounded and seeded (``derandomize``: the same examples every run) so it is deterministic and
takes about a minute on two cores. The checks: no 5xx, every status code and every response
body and content type as the document declares. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from fixtures.database import create_database, drop_database, free_port, run_async
from fixtures.generate import heavy_user_id
from fixtures.spec import spec_for
from reference.app import create_app
from tests.conftest import auth_headers
from tests.conftest import test_settings as settings_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
#: Examples per operation: enough to reach every parameter and body field, few enough for CI.
EXAMPLES = 10
START_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def served(database, seeded_template, tmp_path_factory) -> Iterator[str]:
    """The service on its own copy of the tiny dataset (the fuzzer writes), in a thread."""
    dsn = run_async(create_database(database.dsn, "wsb_fuzz", seeded_template.dsn))
    storage = tmp_path_factory.mktemp("fuzz-storage")
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings_for(dsn, storage_dir=storage)), access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(START_TIMEOUT_S), "the service did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()
        run_async(drop_database(database.dsn, dsn))


def test_fuzzer_finds_no_server_error_and_nothing_undocumented(served):
    document = requests.get(f"{served}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    headers = auth_headers(heavy_user_id(spec_for("tiny")))
    requests_sent = 0
    failures: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    session = requests.Session()

    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        label = operation.label

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal requests_sent
            case.headers = {**headers, **(case.headers or {})}
            requests_sent += 1
            try:
                case.call_and_validate(base_url=served, session=session, checks=CHECKS)
            except (FailureGroup, Failure) as caught:
                found = caught.exceptions if isinstance(caught, FailureGroup) else (caught,)
                for failure in found:
                    failures[f"{label}: {type(failure).__name__}"] += 1  # noqa: B023
                    examples.setdefault(label, str(failure)[:600])  # noqa: B023

        try:
            run()
        except Unsatisfiable:
            # No parameters and no body: nothing to make invalid.
            assert mode is schemathesis.GenerationMode.NEGATIVE, label

    print(
        f"\nschemathesis {schemathesis.__version__}: {len(operations)} operations, "
        f"{requests_sent} requests ({EXAMPLES} examples at most per operation, valid and "
        "invalid input each, derandomized); "
        f"failures: {dict(failures) or 'none'}"
    )
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in examples.items())
