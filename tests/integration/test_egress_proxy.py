"""Deliveries through HOOKSTREAM_EGRESS_PROXY (DeliveryClient's aiohttp path), against a
forward proxy of our own on loopback. No Kafka.

The proxy is real enough to tell what the client did: it reads each request, records its
request line and its Proxy-Authorization, and forwards it (plain HTTP, absolute form) or
tunnels it (CONNECT, for HTTPS). What must hold: the request reaches the receiver signed as
the wire would send it, the proxy's credentials go to the proxy and never to the receiver,
and HTTPS targets are tunnelled and verified end to end, never handed to the proxy in the
clear.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from streams.delivery.client import DeliveryClient
from streams.settings import Settings

from ..support.raw_receivers import OK, ScriptedReceiver, always, self_signed


class _Proxy:
    """A forward proxy: absolute-form requests are sent on, CONNECT is tunnelled."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.authorizations: list[bytes | None] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.split(b"\r\n")
            self.lines.append(line)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (f.partition(b":") for f in fields if f)}
            self.authorizations.append(headers.get(b"proxy-authorization"))
            method, target, _ = line.split(b" ")
            if method == b"CONNECT":
                host, _, port = target.rpartition(b":")
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            url = yarl.URL(target.decode())
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            kept = [f for f in fields if f and not f.lower().startswith(
                (b"proxy-authorization:", b"proxy-connection:", b"connection:"))]
            up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
            up_writer.write(b"%s %s HTTP/1.1\r\n%s\r\nConnection: close\r\n\r\n%s" % (
                method, url.raw_path_qs.encode(), b"\r\n".join(kept), body))
            answer = await up_reader.read()  # the receiver closes after its answer
            up_writer.close()
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Proxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _client(proxy: _Proxy) -> DeliveryClient:
    return DeliveryClient(Settings.from_env({
        "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1", "HOOKSTREAM_DELIVERY_TIMEOUT": "5",
        "HOOKSTREAM_EGRESS_PROXY": f"http://hook%20user:p%40ss@127.0.0.1:{proxy.port}"}))


def test_a_delivery_through_the_proxy_reaches_the_receiver_with_the_proxy_s_credentials_kept(
        ) -> None:
    async def main() -> Any:
        async with _Proxy().running() as proxy, \
                ScriptedReceiver(always(OK), closes=True).running() as receiver:
            client = _client(proxy)
            try:
                async with asyncio.timeout(10):
                    answer = await client.post(receiver.url, b'{"n":1}', {
                        "Content-Type": "application/json",
                        "X-Webhook-Signature": "sha256=abc"}, 10)
            finally:
                await client.aclose()
            return answer, proxy, receiver

    answer, proxy, receiver = asyncio.run(main())
    assert (answer.status, answer.body) == (200, b"ok")
    assert proxy.lines == [f"POST {receiver.url} HTTP/1.1".encode()]
    assert proxy.authorizations == [b"Basic " + base64.b64encode(b"hook user:p@ss")]
    [request] = receiver.requests
    assert b"\r\nX-Webhook-Signature: sha256=abc\r\n" in request
    assert request.endswith(b'\r\n\r\n{"n":1}')
    assert b"proxy-authorization" not in request.lower()


def test_an_https_delivery_is_tunnelled_and_verified_end_to_end(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)

    async def main() -> Any:
        async with _Proxy().running() as proxy, \
                ScriptedReceiver(always(OK)).running(tls.server) as receiver:
            client = _client(proxy)
            try:
                # The client's own trust store does not know this certificate: the tunnel
                # is made, and the receiver's certificate is refused through it.
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
                    async with asyncio.timeout(10):
                        await client.post(receiver.url, b"{}", {}, 10)
            finally:
                await client.aclose()
            return caught.value, proxy, receiver

    error, proxy, receiver = asyncio.run(main())
    assert "certificate verify failed" in str(error).lower()
    port = yarl.URL(receiver.url).port
    assert proxy.lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]
    assert proxy.authorizations == [b"Basic " + base64.b64encode(b"hook user:p@ss")]
    assert receiver.requests == []
