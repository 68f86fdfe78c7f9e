"""The one HTTP client factory for deliveries, so no call site can forget a rule.

- Deliveries go out on our own HTTP/1.1 connections (`wire.py`, responses parsed by
  httptools): `make bench` (t) measured them at 1.8-2.1x bare aiohttp's rate (wire.py has
  the figures). Through an egress proxy they go through an aiohttp session
  instead (its CONNECT tunnels and proxy authentication are not worth writing again).
- Redirects are never followed: a 3xx is a failed delivery, and following one could lead
  a signed request to a host nobody vetted.
- In secure mode every address a socket is made for is judged public first, whether the
  URL named it or DNS answered it, and the socket connects to the address judged: so
  neither DNS rebinding nor a URL that names an address in some odd spelling reaches
  inside. (The aiohttp session keeps the same rule in its resolver and socket factory.)
- Connections kept per host up to the worker's delivery concurrency; no cookies, ever.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from .. import __version__
from ..core.urls import is_public_address
from ..settings import Settings
from .wire import DRAIN_LIMIT, Answer, Origin, Wire, frame, route

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
            raise _refused(host)
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
    """Signed POSTs on the connections `_wire` builds, or through the egress proxy on the
    aiohttp session `_session` builds (the rules above, in both).

    Not through httpx.AsyncClient: its request merging, cookie jar and redirect/auth
    machinery cost about a third of a loaded worker's CPU (py-spy, `make bench`), and a
    webhook sender wants none of them. Cookies are worse than wasted: a jar shared by every
    tenant would send one receiver's cookies to another webhook on the same host. Nor
    through httpx Requests on httpx-aiohttp's transport, as before: building the Request
    and Response models and mapping them to aiohttp's cost a tenth of the worker again
    (`make bench` (t): 0.77 of bare aiohttp's rate that way).
    """

    def __init__(self, settings: Settings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces the connections, as httpx.AsyncClient(transport=...) does:
        httpx.MockTransport(handler) in tests. The rules of this module live in what
        `_wire` and `_session` build; a transport given is trusted to apply its own."""
        self._settings = settings
        self._transport = transport
        self._session: aiohttp.ClientSession | None = None
        self._proxy, self._proxy_auth = _proxy(settings.egress_proxy)
        # Built now, not at the first post: its certificate store took 48-75 ms to load,
        # and the first deliveries after a start waited behind it (`make bench` (b)).
        self._wire: Wire | None = (_wire(settings) if transport is None and self._proxy is None
                                   else None)
        timeout = settings.delivery_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout,
                                              sock_connect=timeout, sock_read=timeout)
        self._extensions = {"timeout": {"connect": timeout, "read": timeout,
                                        "write": timeout, "pool": timeout}}

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   keep: int) -> Answer:
        """Status, the first `keep` bytes of the response body and its Retry-After. Raises
        aiohttp.ClientError, httpx.HTTPError (a test's transport) or OSError when no
        response came."""
        if self._transport is not None:
            return await self._post_through(self._transport, url, body, headers, keep)
        if self._wire is not None:
            origin, head = _routed(url)
            return await self._wire.post(origin, frame(head, headers, body), keep)
        if self._session is None:
            self._session = _session(self._settings)
        async with self._session.post(
                _parsed(url), data=body, headers={"User-Agent": USER_AGENT, **headers},
                allow_redirects=False, auto_decompress=False, compress=None,
                timeout=self._timeout, proxy=self._proxy,
                proxy_auth=self._proxy_auth) as response:
            kept = b""
            seen = 0
            # Read to the end (within a limit) so the connection goes back to the pool.
            async for chunk in response.content.iter_any():
                if len(kept) < keep:
                    kept += chunk[:keep - len(kept)]
                seen += len(chunk)
                if seen > DRAIN_LIMIT:
                    response.close()  # a huge answer: closing the connection is cheaper
                    break
            return Answer(response.status, kept, response.headers.get("Retry-After"))

    async def _post_through(self, transport: httpx.AsyncBaseTransport, url: str,
                            body: bytes, headers: dict[str, str],
                            keep: int) -> Answer:
        request = httpx.Request("POST", url, content=body,
                                headers={"User-Agent": USER_AGENT, **headers},
                                extensions=self._extensions)
        response = await transport.handle_async_request(request)
        try:
            return Answer(response.status_code, (await response.aread())[:keep],
                          response.headers.get("Retry-After"))
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
        if self._session is not None:
            await self._session.close()
        if self._wire is not None:
            await self._wire.aclose()


@functools.lru_cache(maxsize=8192)
def _parsed(url: str) -> yarl.URL:
    """Webhook URLs repeat on every delivery; parse each once (through httpx.URL first, as
    when requests were httpx's: the same normalisation of what the URL policy passed)."""
    return yarl.URL(str(httpx.URL(url)))


@functools.lru_cache(maxsize=8192)
def _routed(url: str) -> tuple[Origin, bytes]:
    return route(_parsed(url), USER_AGENT)


def _refused(host: str) -> OSError:
    # errno + strerror (aiohttp shows strerror in its connection error); one message
    # whether nothing answered or only private addresses did.
    return OSError(errno.EHOSTUNREACH, f"{host} {NOT_PUBLIC}; refused")


def _wire(settings: Settings) -> Wire:
    """The connections deliveries go out on: the rules of this module, in one place."""
    return Wire(limit=settings.delivery_concurrency,
                tls=httpx.create_ssl_context(trust_env=False),
                admit=None if settings.allow_insecure_targets else is_public_address,
                refused=_refused)


def _proxy(url: str | None) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The egress proxy's URL without credentials, and the credentials (percent-decoded).

    As `proxy_auth`, not a Proxy-Authorization in `proxy_headers`: aiohttp sends those
    headers only on a CONNECT, so plain-HTTP deliveries reached the proxy without them
    (tests/integration/test_egress_proxy.py)."""
    if not url:
        return None, None
    proxy = httpx.Proxy(url)
    return str(proxy.url), aiohttp.BasicAuth(*proxy.auth) if proxy.auth else None


def _session(settings: Settings) -> aiohttp.ClientSession:
    """The session every delivery goes through: the rules of this module, in one place."""
    connector_args: dict[str, Any] = {
        # A pool sized to the worker's delivery concurrency; httpx's certificate store.
        "limit": settings.delivery_concurrency, "keepalive_timeout": 30.0,
        "ssl": httpx.create_ssl_context(trust_env=False),
    }
    if not settings.allow_insecure_targets:
        connector_args["resolver"] = PublicOnlyResolver()
        # With an egress proxy, deliveries leave from its fixed addresses (the
        # documentation's IP allowlist); the proxy connects (and should refuse private
        # targets too).
        if not settings.egress_proxy:
            connector_args["socket_factory"] = _public_socket
    # No cookie jar: see DeliveryClient. No proxy from the environment: only ours.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args),
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
