"""streams.api.context.Api.forwarded: a read forwarded to the worker holding the data carries
a sealed principal, never the caller's credentials; a worker trusts only a principal that
opens under the forwarding key and is fresh (streams.api.auth.Authenticator)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

from streams.api.auth import FORWARDED_PRINCIPAL, VOUCHED_FOR_S, Authenticator
from streams.api.context import Api
from streams.api.validation import ApiError
from streams.core.apikeys import Principal
from streams.core.secretbox import SecretBox, generate_master_key, parse_keys
from streams.settings import Settings
from streams.subscriptions.view import SubscriptionsView

SECRETS = SecretBox(parse_keys(generate_master_key("t1")))


class _Answer:
    status = 200
    content_type = "application/json"

    async def text(self) -> str:
        return '{"data": []}'

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def request(self, **kwargs: Any) -> _Answer:
        self.sent.append(kwargs)
        return _Answer()


class _View:
    def text(self, value: str, *, content_type: str, status: int) -> tuple[int, str]:
        return status, value


def _auth() -> Authenticator:
    return Authenticator(Settings(), SimpleNamespace(current={}),  # type: ignore[arg-type]
                         SubscriptionsView("127.0.0.1:9", "t"), SECRETS)


def _api(owner: str, client: _Client) -> Api:
    app = SimpleNamespace(
        router=SimpleNamespace(key_store=lambda table, key: URL(owner)),
        conf=SimpleNamespace(canonical_url=URL("http://10.0.0.1:6066")), http_client=client)
    rt = SimpleNamespace(app=app, settings=Settings())
    fields: dict[str, Any] = dict.fromkeys(
        ("dead_letters", "idempotency", "answers", "control_topic", "log_topic",
         "idempotency_topic", "readiness"))
    return Api(rt=rt, auth=_auth(), history=SimpleNamespace(table=SimpleNamespace(  # type: ignore[arg-type]
        name="history")), **fields)


def _request() -> Any:
    return SimpleNamespace(
        headers={"Authorization": "Bearer hsk_k1_secretpart", "Cookie": "c=1"},
        url=URL("http://10.0.0.1:6066/v1/webhooks/wh_1/deliveries?limit=5"), method="GET")


def test_the_forwarded_request_carries_a_sealed_principal_and_no_key() -> None:
    client = _Client()
    ctx = _api("http://10.0.0.2:7000", client)
    caller = Principal("k1", "ws_a")
    answer = asyncio.run(ctx.forwarded(_View(), _request(), caller, "wh_1"))  # type: ignore[arg-type]
    assert answer == (200, '{"data": []}')
    (sent,) = client.sent
    assert str(sent["url"]) == "http://10.0.0.2:7000/v1/webhooks/wh_1/deliveries?limit=5"
    assert list(sent["headers"]) == [FORWARDED_PRINCIPAL]
    assert "secretpart" not in str(sent)
    assert ctx.auth.unvouch(sent["headers"][FORWARDED_PRINCIPAL], time.time()) == caller


def test_the_worker_holding_the_data_answers_itself() -> None:
    client = _Client()
    ctx = _api("http://10.0.0.1:6066", client)
    assert asyncio.run(ctx.forwarded(_View(), _request(), Principal("admin", None),  # type: ignore[arg-type]
                                     "wh_1")) is None
    assert client.sent == []


def test_a_forwarded_request_is_answered_where_it_arrives_never_passed_on() -> None:
    # During a rolling upgrade a worker of the older version advertised 0.0.0.0: forwarding
    # there reached the forwarding worker itself, which forwarded again, for ever.
    for owner, headers in [("http://0.0.0.0:6066", {}), ("http://[::]:6066", {}),
                           ("http://10.0.0.2:7000", {FORWARDED_PRINCIPAL: "sealed"})]:
        client = _Client()
        request = _request()
        request.headers = {**request.headers, **headers}
        assert asyncio.run(_api(owner, client).forwarded(  # type: ignore[arg-type]
            _View(), request, Principal("admin", None), "wh_1")) is None, owner
        assert client.sent == [], owner


class _Unreachable(_Client):
    def request(self, **kwargs: Any) -> _Answer:
        raise OSError("Cannot connect to host worker-2:6066 [Name or service not known]")


def test_a_holder_that_cannot_be_reached_is_a_503_to_retry_not_a_500() -> None:
    # Its advertised host may not resolve here (a machine name), or it is restarting.
    ctx = _api("http://worker-2:6066", _Unreachable())
    with pytest.raises(ApiError) as refused:
        asyncio.run(ctx.forwarded(_View(), _request(),  # type: ignore[arg-type]
                                  Principal("admin", None), "wh_1"))
    assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) > 0


def test_a_vouched_principal_must_open_and_be_fresh() -> None:
    auth = _auth()
    caller = Principal("k1", "ws_a")
    sealed = auth.vouch(caller)
    assert auth.unvouch(sealed, time.time()) == caller
    assert auth.unvouch(sealed, time.time() + VOUCHED_FOR_S + 1) is None
    assert auth.unvouch(sealed[:-4] + "AAAA", time.time()) is None
    assert auth.unvouch("enc:v1:t1:xyz", time.time()) is None
    # Sealed under the master key itself (as a webhook secret is): not a principal.
    forged = SECRETS.seal(f'{{"key_id": "admin", "workspace_id": null, '
                          f'"until": {time.time() + 10}}}')
    assert auth.unvouch(forged, time.time()) is None
