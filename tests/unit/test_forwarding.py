"""streams.api.forwarding: a read forwarded to the owning worker carries a sealed principal,
never the caller's credentials; the owner trusts only a principal that opens and is fresh."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

from streams.api import auth, forwarding
from streams.core.apikeys import Principal


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
    def json(self, value: Any, status: int = 200, **_: Any) -> tuple[int, Any]:
        return status, value

    def text(self, value: str, *, content_type: str, status: int) -> tuple[int, str]:
        return status, value


def _request(headers: dict[str, str]) -> Any:
    return SimpleNamespace(headers=_Headers(headers), remote="10.9.8.7",
                           url=URL("http://127.0.0.1:6066/v1/webhooks/wh_1/deliveries"),
                           match_info={"webhook_id": "wh_1"}, method="GET")


class _Headers(dict[str, str]):
    def getall(self, name: str, default: list[str]) -> list[str]:
        return [self[name]] if name in self else default


def test_the_forwarded_request_carries_a_sealed_principal_and_no_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Client()
    monkeypatch.setattr(forwarding, "app", SimpleNamespace(
        router=SimpleNamespace(key_store=lambda table, key: URL("http://10.0.0.2:7000")),
        conf=SimpleNamespace(canonical_url=URL("http://10.0.0.1:6066")), http_client=client))
    caller = Principal("k1", "ws_a")
    monkeypatch.setattr(forwarding, "principal_of", lambda request: caller)

    async def view(web: Any, request: Any, **kwargs: Any) -> Any:
        raise AssertionError("the owner is another worker: forward, do not answer")

    routed = forwarding.answered_by_owner(SimpleNamespace(name="history"), "webhook_id")(view)
    request = _request({"Authorization": "Bearer hsk_k1_secretpart", "Cookie": "c=1"})
    assert asyncio.run(routed(_View(), request)) == (200, '{"data": []}')
    (sent,) = client.sent
    assert str(sent["url"]) == "http://10.0.0.2:7000/v1/webhooks/wh_1/deliveries"
    assert list(sent["headers"]) == [auth.FORWARDED_PRINCIPAL]
    assert "secretpart" not in str(sent)
    assert auth._unvouch(sent["headers"][auth.FORWARDED_PRINCIPAL], time.time()) == caller


def test_the_owner_answers_itself_with_the_principal(monkeypatch: pytest.MonkeyPatch) -> None:
    here = URL("http://10.0.0.1:6066")
    monkeypatch.setattr(forwarding, "app", SimpleNamespace(
        router=SimpleNamespace(key_store=lambda table, key: here),
        conf=SimpleNamespace(canonical_url=here), http_client=_Client()))
    caller = Principal("admin", None)
    monkeypatch.setattr(forwarding, "principal_of", lambda request: caller)

    async def view(web: Any, request: Any, **kwargs: Any) -> Any:
        return kwargs["principal"]

    routed = forwarding.answered_by_owner(SimpleNamespace(name="history"), "webhook_id")(view)
    assert asyncio.run(routed(_View(), _request({}))) == caller


def test_an_unknown_caller_is_never_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Client()
    monkeypatch.setattr(forwarding, "app", SimpleNamespace(
        router=SimpleNamespace(key_store=lambda table, key: URL("http://10.0.0.2:7000")),
        conf=SimpleNamespace(canonical_url=URL("http://10.0.0.1:6066")), http_client=client))
    monkeypatch.setattr(forwarding, "principal_of", lambda request: None)

    async def view(web: Any, request: Any, **kwargs: Any) -> Any:
        raise AssertionError("not for an unknown caller")

    routed = forwarding.answered_by_owner(SimpleNamespace(name="history"), "webhook_id")(view)
    status, _ = asyncio.run(routed(_View(), _request({"Authorization": "Bearer nope"})))
    assert status == 401 and client.sent == []


def test_a_vouched_principal_must_open_and_be_fresh() -> None:
    caller = Principal("k1", "ws_a")
    sealed = auth.vouch(caller)
    assert auth._unvouch(sealed, time.time()) == caller
    assert auth._unvouch(sealed, time.time() + auth.VOUCHED_FOR_S + 1) is None
    assert auth._unvouch(sealed[:-4] + "AAAA", time.time()) is None
    assert auth._unvouch("enc:v1:dev:xyz", time.time()) is None
    # Sealed under the master key itself (as a webhook secret is): not a principal.
    from streams.runtime.app import settings
    assert auth._unvouch(settings.secret_box().seal('{"key_id": "admin", "workspace_id": null,'
                                                    f' "until": {time.time() + 10}}}'),
                         time.time()) is None
