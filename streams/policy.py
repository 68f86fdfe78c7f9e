"""Pure rules: which webhook URLs and target addresses are acceptable.

Secure by default: only https URLs whose host is a public address. Development, the demo
and the tests lift this with HOOKSTREAM_ALLOW_INSECURE_TARGETS=1.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

#: Blocks on top of ipaddress's own flags: shared address space (RFC 6598) is not
#: flagged private by every Python version, and NAT64 / 6to4 can embed private IPv4.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24")]


def retry_after(attempt: int, delays: tuple[float, ...]) -> tuple[int, float] | None:
    """After failed attempt `attempt` (1-based): (retry topic index, delay s), or None if
    the delivery is exhausted and goes to the dead-letter topic."""
    if 1 <= attempt <= len(delays):
        return attempt - 1, delays[attempt - 1]
    return None


class UrlPolicyError(ValueError):
    """A URL or address we will not deliver to; the message says why."""


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names without DNS, or None for a real hostname.

    Besides standard literals this catches the shorthand IPv4 forms that getaddrinfo
    accepts without a lookup (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`), which
    would otherwise pass as hostnames.
    """
    host = host.strip("[]").rstrip(".").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local
        or ip.is_reserved or ip.is_unspecified
    )


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses.

    IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo) are judged by that too.
    """
    ip = literal_address(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not _is_public_ip(ip):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        return all(_is_public_ip(v4) for v4 in embedded if v4 is not None)
    return True


def check_url(url: str, *, allow_insecure: bool) -> str:
    """Return the URL if we may deliver to it, else raise UrlPolicyError.

    Hostnames are checked again after DNS resolution at delivery time.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UrlPolicyError(f"longer than {MAX_URL_LENGTH} characters")
    if any(c <= " " or c == "\x7f" for c in url):
        # urlsplit silently drops tabs and newlines; the URL we store must be the one checked.
        raise UrlPolicyError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlPolicyError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise UrlPolicyError("must be an http(s) URL")
    if not parts.hostname:
        raise UrlPolicyError("has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlPolicyError("must not carry credentials")
    if port == 0:
        raise UrlPolicyError("port 0 is not a valid port")
    if allow_insecure:
        return url
    if parts.scheme != "https":
        raise UrlPolicyError("must use https (set HOOKSTREAM_ALLOW_INSECURE_TARGETS=1 for dev)")
    host = parts.hostname.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        raise UrlPolicyError("points at this machine")
    if literal_address(host) is None:
        return url  # a hostname: vetted after resolution, when we connect
    if not is_public_address(host):
        raise UrlPolicyError(f"{host} is not a public address")
    return url
