"""Failed authentications are counted, logged without the key, and a client address with more
than 20 of them a minute is answered 429 (API and console sign-in alike); others are not."""

from __future__ import annotations

import http.client
import json
import uuid
from urllib.parse import urlencode

import pytest

from ..support.pipeline import Deployment
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

LIMIT = 20


DEPLOYMENT: DeploymentSpec = {}


def _request(dep: Deployment, source: str, method: str, path: str,
             headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request from the loopback address `source` (each is another client)."""
    connection = http.client.HTTPConnection("127.0.0.1", dep.workers[0].port, timeout=30,
                                            source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _failures_metric(dep: Deployment, surface: str) -> float:
    _, _, body = _request(dep, "127.0.0.1", "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(f'hookstream_auth_failures_total{{surface="{surface}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_guessing_client_is_slowed_and_nobody_else_is(dep: Deployment) -> None:
    admin = {"Authorization": f"Bearer {dep.env['HOOKSTREAM_ADMIN_KEY']}"}
    guess = f"hsk_{uuid.uuid4().hex[:12]}_guess{uuid.uuid4().hex}"
    before = _failures_metric(dep, "api")
    statuses = [_request(dep, "127.0.0.2", "GET", "/v1/webhooks",
                         {"Authorization": f"Bearer {guess}"})[0] for _ in range(LIMIT + 1)]
    assert statuses == [401] * (LIMIT + 1)
    status, headers, body = _request(dep, "127.0.0.2", "GET", "/v1/webhooks", admin)
    assert status == 429, body  # even with a good key: the address must wait first
    assert 0 < int(headers["Retry-After"]) <= 61
    assert json.loads(body)["error"]["code"] == "too_many_requests"
    # Another address, and a request with no key at all, are not affected.
    assert _request(dep, "127.0.0.3", "GET", "/v1/webhooks", admin)[0] == 200
    assert _request(dep, "127.0.0.4", "GET", "/v1/webhooks")[0] == 401
    assert _failures_metric(dep, "api") == before + LIMIT + 1
    log = dep.workers[0].log_text()
    assert log.count("authentication failed on the api from 127.0.0.2") == LIMIT + 1
    assert guess not in log and guess.split("_", 2)[2] not in log


def test_console_sign_in_is_held_to_the_same_limit(dep: Deployment) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = urlencode({"api_key": f"hsk_nope_{uuid.uuid4().hex}"}).encode()
    before = _failures_metric(dep, "console")
    statuses = [_request(dep, "127.0.0.5", "POST", "/console/login", form, wrong)[0]
                for _ in range(LIMIT + 1)]
    assert statuses == [401] * (LIMIT + 1)
    right = urlencode({"api_key": dep.env["HOOKSTREAM_ADMIN_KEY"]}).encode()
    assert _request(dep, "127.0.0.5", "POST", "/console/login", form, right)[0] == 429
    assert _request(dep, "127.0.0.6", "POST", "/console/login", form, right)[0] == 303
    assert _failures_metric(dep, "console") == before + LIMIT + 1


def test_a_forged_forwarded_principal_is_refused(dep: Deployment) -> None:
    """Only a worker can vouch for a caller: a client that sends the header gets 401."""
    status, _, _ = _request(dep, "127.0.0.7", "GET", "/v1/webhooks",
                            {"X-Hookstream-Principal": "enc:v1:test1:AAAAAAAAAAAAAAAAAAAAAAAA"})
    assert status == 401
