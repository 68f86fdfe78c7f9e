"""Which reverse proxies we believe, and what they tell us about a request. Pure.

Behind a proxy that ends TLS, the worker sees a plain-HTTP connection from the proxy's
address. The proxy says what it saw in `X-Forwarded-Proto` (the client's scheme) and
`X-Forwarded-For` (the chain of client addresses), but any client can send those headers
too, so they count only on a connection whose peer is inside one of
HOOKSTREAM_TRUSTED_PROXIES (`Settings.trusted_proxies`, CIDRs). With none configured, no
header is believed: the connection is all we know.

Used for the console's `Secure` cookie (is this request https?) and meant for anything that
needs the client's address (rate limits): `TrustedProxies.client_address`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str | None) -> Address | None:
    """An IP address as a peer or a forwarded-for entry writes it, else None.

    Accepts `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]` and `[::1]:5678`; an IPv4-mapped IPv6
    address (`::ffff:1.2.3.4`, what a dual-stack socket reports) is the IPv4 address. Names,
    `unknown` and obfuscated identifiers (RFC 7239) are None.
    """
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value, closed, port = value[1:].partition("]")
        if not closed or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
    elif value.count(":") == 1:  # IPv4 with a port; bare IPv6 has two colons or more
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _items(header_values: Iterable[str]) -> list[str]:
    """Comma-separated items of a header that may also repeat, in order of arrival."""
    return [item.strip() for value in header_values for item in value.split(",")
            if item.strip()]


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, peer: str | Address | None) -> bool:
        """Is this connection's peer one of our proxies?"""
        address = peer if isinstance(peer, Address) else parse_address(peer)
        # An address is never inside a network of the other IP version (no error either).
        return address is not None and any(address in n for n in self._networks)

    def is_https(self, scheme: str, peer: str | None, forwarded_proto: Iterable[str]) -> bool:
        """Did the client reach us over https: directly, or per our proxy's X-Forwarded-Proto?

        Only the right-most value counts: it is the one our proxy (the peer) set or appended;
        anything to its left came from further away, unvouched for. A proxy chain that wants
        the outermost scheme honoured should pass it on unchanged (or set the setting to 1).
        """
        if scheme.lower() == "https":
            return True
        items = _items(forwarded_proto)
        return bool(items) and self.trusts(peer) and items[-1].lower() == "https"

    def client_address(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The address of whoever connected to our outermost trusted proxy.

        Walks X-Forwarded-For from the right (nearest hop first) while the hop is trusted,
        and answers the first address that is not one of our proxies: entries further left
        were written by the client and prove nothing. If an entry does not parse, the walk
        stops at the hop that passed it on (a misconfigured proxy groups its clients rather
        than letting one pick its own address). None only when the peer itself is unknown.
        """
        current = parse_address(peer)
        if current is None:
            return None
        hops = _items(forwarded_for)
        while self.trusts(current) and hops:
            previous = parse_address(hops.pop())
            if previous is None:
                break
            current = previous
        return str(current)
