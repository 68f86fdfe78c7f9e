"""The one HTTP client factory for deliveries, so no call site can forget a rule.

- httpx Requests over the aiohttp transport: `make bench` (t) measured 219 requests/s with
  httpx's default transport, 2,274/s with httpx.AsyncClient over aiohttp, 4,051/s with this
  client and 4,634/s with bare aiohttp, on the 2-core development machine.
- Redirects are never followed: a 3xx is a failed delivery, and following one could lead
  a signed request to a host nobody vetted.
- In secure mode the resolver drops every non-public address a hostname resolves to, and
  every socket is refused at connect time unless its address is public (`_public_socket`):
  the one check that sees IP literals too, which aiohttp never hands to a resolver. So
  neither DNS rebinding nor a URL that names an address in some odd spelling reaches inside.
- Connection pool sized to the worker's delivery concurrency; no cookies, ever.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from .. import __version__
from ..core.urls import is_public_address
from ..settings import Settings

USER_AGENT = f"hookstream/{__version__} (+https://github.com/hookstream/hookstream)"


#: What a refused target reads like, whichever way it was refused: a tenant learns nothing
#: about internal DNS from the difference between "no such name" and "a private name".
NOT_PUBLIC = "does not resolve to a public address"


class PublicOnlyResolver(ThreadedResolver):
    """Resolves like the system, then keeps public addresses only."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            results = await super().resolve(host, port, family)
        except OSError:
            results = []
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            # errno + strerror: aiohttp shows strerror in its connection error.
            raise OSError(errno.EHOSTUNREACH, f"{host} {NOT_PUBLIC}; refused")
        return public


def _public_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket factory in secure mode: a socket only for a public address."""
    family, type_, proto, _, address = addr_info
    if not is_public_address(str(address[0])):
        raise OSError(errno.EACCES, f"{address[0]} is not a public address; refused")
    return socket.socket(family=family, type=type_, proto=proto)


async def resolves_publicly(host: str, timeout: float = 5.0) -> bool:
    """Whether `host` (a name) resolves, as the delivery client resolves it, to at least one
    address and only public ones. The API asks before it stores a URL."""
    try:
        async with asyncio.timeout(timeout):
            results = await ThreadedResolver().resolve(host, 443, socket.AF_UNSPEC)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        return False
    return bool(results) and all(is_public_address(r["host"]) for r in results)


class DeliveryClient:
    """Signed POSTs as httpx Requests, handed straight to the aiohttp transport.

    Not through httpx.AsyncClient: its request merging, cookie jar and redirect/auth
    machinery cost about a third of a loaded worker's CPU (py-spy, `make bench`), and a
    webhook sender wants none of them. Cookies are worse than wasted: a jar shared by every
    tenant would send one receiver's cookies to another webhook on the same host.
    """

    def __init__(self, settings: Settings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces the aiohttp one, as httpx.AsyncClient(transport=...) does:
        httpx.MockTransport(handler) in tests. The rules of this module live in the default
        transport only; one given is trusted to apply its own."""
        self._transport: httpx.AsyncBaseTransport = (
            transport if transport is not None else _transport(settings))
        timeout = settings.delivery_timeout
        self._extensions = {"timeout": {"connect": timeout, "read": timeout,
                                        "write": timeout, "pool": timeout}}

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   keep: int) -> tuple[int, bytes]:
        """(status, the first `keep` bytes of the response body). Raises httpx.HTTPError
        or OSError when no response came."""
        request = httpx.Request("POST", _parsed(url), content=body,
                                headers={"User-Agent": USER_AGENT, **headers},
                                extensions=self._extensions)
        response = await self._transport.handle_async_request(request)
        if response.is_stream_consumed:
            # A transport that read the body already (httpx.MockTransport's Response(content=)).
            return response.status_code, response.content[:keep]
        kept = b""
        seen = 0
        try:
            # Read to the end (within a limit) so the connection goes back to the pool.
            async for chunk in response.aiter_raw():
                if len(kept) < keep:
                    kept += chunk[:keep - len(kept)]
                seen += len(chunk)
                if seen > _DRAIN_LIMIT:
                    break  # a huge answer: closing the connection is cheaper
        finally:
            await response.aclose()
        return response.status_code, kept

    async def aclose(self) -> None:
        await self._transport.aclose()


#: Response bytes read past what is kept, so a keep-alive connection can be reused.
_DRAIN_LIMIT = 64 * 1024


@functools.lru_cache(maxsize=8192)
def _parsed(url: str) -> httpx.URL:
    """Webhook URLs repeat on every delivery; parse each once."""
    return httpx.URL(url)


def _transport(settings: Settings) -> AiohttpTransport:
    limits = httpx.Limits(
        max_connections=settings.delivery_concurrency,
        max_keepalive_connections=settings.delivery_concurrency,
        keepalive_expiry=30.0,
    )
    # With an egress proxy, deliveries leave from its fixed addresses (the documentation's
    # IP allowlist); the proxy then resolves targets, so it should refuse private ones too.
    proxy = httpx.Proxy(settings.egress_proxy) if settings.egress_proxy else None
    transport = AiohttpTransport(limits=limits, trust_env=False, proxy=proxy)

    def session() -> aiohttp.ClientSession:
        connector_args: dict[str, Any] = {
            "limit": settings.delivery_concurrency, "keepalive_timeout": 30.0,
            "ssl": transport.ssl_context,
        }
        if not settings.allow_insecure_targets:
            connector_args["resolver"] = PublicOnlyResolver()
            if proxy is None:  # through a proxy, the proxy connects (and should refuse)
                connector_args["socket_factory"] = _public_socket
        # No cookie jar: see DeliveryClient.
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args),
                                     cookie_jar=aiohttp.DummyCookieJar())

    transport.client = session
    return transport
