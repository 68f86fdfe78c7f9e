"""The real delivery client, in secure mode, never connects to a non-public address: not for
a resolved name, and not for an IP literal in any spelling the client reads as one (aiohttp
hands literals to no resolver, so this is the connect-time guard's job alone).

A loopback listener counts connections; hostile URLs aimed at it go straight to the client,
past the URL policy, as a subscription stored before the policy knew a spelling would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
from collections.abc import AsyncIterator

import aiohttp
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.urls import UrlPolicyError, check_url
from streams.delivery.client import DeliveryClient, resolves_publicly
from streams.settings import Settings

from ..support.hostile_urls import DOTS, FULLWIDTH_DIGITS, ipv4_spelling, unicode_dressing


class _Listener:
    """Counts TCP connections; answers nothing (a client that got this far has failed)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Listener]:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()


def _secure_client() -> DeliveryClient:
    return DeliveryClient(Settings.from_env({"HOOKSTREAM_DELIVERY_TIMEOUT": "2"}))


async def _try(client: DeliveryClient, url: str) -> str:
    """What the client says to `url`; never a response from the listener."""
    try:
        status, _, _ = await client.post(url, b"{}", {}, keep=10)
    except (aiohttp.ClientError, httpx.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"answered {status}"


def _spellings(address: str) -> list[str]:
    """Every 1- to 4-part form of `address`, each part in decimal, octal or hex."""
    value = int.from_bytes(ipaddress.IPv4Address(address).packed, "big")
    forms = []
    for parts in (4, 3, 2, 1):
        # The last part holds whatever bits the earlier (one-byte) parts do not.
        numbers = [value >> (8 * (3 - i)) & 0xFF for i in range(parts - 1)]
        numbers.append(value & ((1 << (8 * (5 - parts))) - 1))
        for bases in itertools.product(("{:d}", "0{:o}", "0x{:x}", "0X{:X}"), repeat=parts):
            forms.append(".".join(base.format(n) for base, n in zip(bases, numbers,
                                                                      strict=True)))
    return forms


@st.composite
def _dressed(draw: st.DrawFn, port: int) -> str:
    host = unicode_dressing(draw, ipv4_spelling(draw, "127.0.0.1"))
    return f"{draw(st.sampled_from(['http', 'https']))}://{host}:{port}/hook"


def test_hostile_spellings_of_loopback_never_reach_it() -> None:
    """Every spelling httpx accepts is sent by the real client; none may connect."""
    tried: list[tuple[str, str]] = []

    async def main() -> int:
        async with _Listener().running() as listener:
            client = _secure_client()
            try:
                port = listener.port
                urls = [f"{scheme}://{host}:{port}/hook" for scheme in ("http", "https")
                        for host in _spellings("127.0.0.1") + _spellings("127.0.0.2")]

                @settings(max_examples=300, derandomize=True, deadline=None,
                          suppress_health_check=list(HealthCheck))
                @given(_dressed(port))
                def collect(url: str) -> None:
                    urls.append(url)

                collect()
                urls += [f"https://127{d}0{d}0{d}1:{port}/" for d in DOTS]
                urls += [f"http://{''.join(FULLWIDTH_DIGITS.get(c, c) for c in '127.0.0.1')}"
                         f":{listener.port}/", f"http://[::1]:{listener.port}/",
                         f"http://[::ffff:127.0.0.1]:{listener.port}/",
                         f"http://localhost:{listener.port}/", f"http://0:{listener.port}/"]
                for url in urls:
                    with contextlib.suppress(httpx.InvalidURL):
                        httpx.URL(url)  # what httpx cannot parse never reaches a socket
                        tried.append((url, await _try(client, url)))
            finally:
                await client.aclose()
            return listener.connections

    connections = asyncio.run(main())
    assert len(tried) > 1000, "too few URLs reached the client to mean anything"
    assert connections == 0, [t for t in tried if not t[1].startswith(("Client", "OS"))]
    # The policy refuses every one of them as well.
    for url, _ in tried:
        try:
            check_url(url, allow_insecure=False)
        except UrlPolicyError:
            continue
        raise AssertionError(f"policy accepted {url}")


def test_the_insecure_client_does_connect() -> None:
    """The control: the same listener is reachable when insecure targets are allowed."""

    async def main() -> int:
        async with _Listener().running() as listener:
            client = DeliveryClient(Settings.from_env({
                "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1", "HOOKSTREAM_DELIVERY_TIMEOUT": "2"}))
            try:
                await _try(client, f"http://127.0.0.1:{listener.port}/")
            finally:
                await client.aclose()
            return listener.connections

    assert asyncio.run(main()) == 1


def test_no_answer_and_a_private_answer_look_the_same() -> None:
    async def main() -> tuple[bool, bool, bool]:
        return (await resolves_publicly("localhost"),
                await resolves_publicly("no-such-host.invalid"),
                await resolves_publicly("bad..name"))

    assert asyncio.run(main()) == (False, False, False)
