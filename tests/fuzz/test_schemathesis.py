"""Schemathesis fuzzes both OpenAPI documents against a real gateway process on SQLite.

Every operation of the admin API (with the admin key) and of the client API (with a customer's
key) gets a bounded, derandomized set of generated requests, valid and invalid. For each:
no 5xx, the status, content type, headers and body conform to the document, the process is
still up, and a request answered with an error did not move the customer's balance (one that
succeeded legitimately charges).
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ciyuan.admin.openapi import OPENAPI as ADMIN_OPENAPI
from ciyuan.gateway.openapi import OPENAPI
from tests.fuzz.conftest import FuzzGateway

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Bounded and derandomized: the same examples on every run, so CI is deterministic, and few
# enough that both documents are fuzzed in well under a minute on a loaded machine.
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# The documents are loaded from the code, not the wire: schemathesis 4.32's lazy fixture loader
# does not run on pytest 9 (it reads a private node attribute pytest no longer has). The test
# below checks that each gateway serves exactly these documents, so nothing is lost.
# Unknown query parameters are ignored, as most HTTP APIs do; every declared one is checked.
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
admin = schemathesis.openapi.from_dict(ADMIN_OPENAPI, config=CONFIG)
client = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


@admin.parametrize()
@FUZZ
def test_admin_api(case: schemathesis.Case, fuzz_gateway: FuzzGateway) -> None:
    case.call_and_validate(
        base_url=fuzz_gateway.base_url,
        headers={"authorization": f"Bearer {fuzz_gateway.admin_key}"},
        checks=CHECKS,
        timeout=30,
    )
    assert fuzz_gateway.alive()


@client.parametrize()
@FUZZ
def test_client_api(case: schemathesis.Case, fuzz_gateway: FuzzGateway) -> None:
    before = fuzz_gateway.available()
    response = case.call_and_validate(
        base_url=fuzz_gateway.base_url,
        headers={"authorization": f"Bearer {fuzz_gateway.key}"},
        checks=CHECKS,
        timeout=30,
    )
    assert fuzz_gateway.alive()
    after = fuzz_gateway.available()
    if response.status_code >= 400:
        assert after == before, f"HTTP {response.status_code} charged {before - after}"
    else:
        assert after <= before


def test_client_document_is_valid_served_and_covers_every_v1_route(
    fuzz_gateway: FuzzGateway,
) -> None:
    from ciyuan.gateway.app import create_app

    served = httpx.get(f"{fuzz_gateway.base_url}/v1/ciyuan/openapi.json").json()
    assert served == OPENAPI
    assert httpx.get(f"{fuzz_gateway.base_url}/admin/openapi.json").json() == ADMIN_OPENAPI
    validate(served)
    documented = {
        (path, method.upper()) for path, item in OPENAPI["paths"].items() for method in item
    }
    # Build the app's route table without running it: the lifespan never starts.
    stub = SimpleNamespace(limits=SimpleNamespace(header_bytes_max=1, body_timeout_s=1.0))
    app = create_app(runtime=stub)  # type: ignore[arg-type]
    routed = {
        (route.path, method)
        for route in app.routes
        if getattr(route, "path", "").startswith("/v1/") and route.path != "/v1/ciyuan/openapi.json"
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}
    }
    assert routed == documented
