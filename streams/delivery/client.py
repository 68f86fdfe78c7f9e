"""The one HTTP client factory for deliveries, so no call site can forget a rule.

- httpx API over the aiohttp transport: measured ~4x the requests/s of httpx's default
  transport on these 2-core machines (KAFKA-NOTES; re-measured by `make bench`).
- Redirects are never followed: a 3xx is a failed delivery, and following one could lead
  a signed request to a host nobody vetted.
- In secure mode the resolver drops every non-public address a hostname resolves to, and
  the connection goes to an address it returned, so DNS rebinding cannot reach inside.
- Connection pool sized to the worker's delivery concurrency.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from .. import __version__
from ..policy import is_public_address
from ..settings import Settings

USER_AGENT = f"hookstream/{__version__} (+https://github.com/hookstream/hookstream)"


class PublicOnlyResolver(ThreadedResolver):
    """Resolves like the system, then keeps public addresses only."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            # errno + strerror: aiohttp shows strerror in its connection error.
            raise OSError(errno.EHOSTUNREACH, f"{host} resolves to no public address; refused")
        return public


def create_client(settings: Settings) -> httpx.AsyncClient:
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
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args))

    transport.client = session
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.delivery_timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )
