"""Pure rules: which webhook URLs and target addresses are acceptable.

Secure by default: only https URLs whose host is a public address. Development, the demo
and the tests lift this with HOOKSTREAM_ALLOW_INSECURE_TARGETS=1.

One notion of "the host we will connect to". A URL is judged in the form the delivery
client will use, and stored and sent in exactly that form (`canonical_url`):
- a Unicode host is mapped as IDNA (UTS #46) and getaddrinfo map it, so
  `https://127。0。0。1/` (U+3002 full stops, likewise U+FF0E and U+FF61) or fullwidth
  digits are judged as the 127.0.0.1 they become, not as the hostnames they look like;
- a host whose last label is a number is an IPv4 address (the WHATWG URL rule, and what
  getaddrinfo does with `127.1`, `2130706433`, `0x7f.1` or `0177.0.0.1`): it must parse as
  one, and is rewritten as the dotted quad it names;
- whatever does not normalise cleanly is refused rather than guessed at: percent-encoded
  hosts, IPv6 zone ids, backslashes, userinfo, empty or over-long labels, characters a
  host name cannot hold.
The client still refuses a non-public address at connect time (streams.delivery.client),
for literals and resolved names alike: these rules decide what is stored, that guard
decides what is reached.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import idna

MAX_URL_LENGTH = 2048
#: RFC 1035: 63 octets a label, 253 a name (without the trailing dot).
MAX_LABEL = 63
MAX_HOST = 253

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Blocks on top of ipaddress's own flags: shared address space (RFC 6598) is not flagged
#: private by every Python version; IETF protocol assignments; deprecated IPv6 site-local
#: (fec0::/10), which ipaddress calls global.
_EXTRA_BLOCKED = [ipaddress.ip_network(n)
                  for n in ("100.64.0.0/10", "192.0.0.0/24", "fec0::/10")]

_NETLOC = re.compile(r"(?:\[(?P<ipv6>[^\[\]]*)\]|(?P<host>[^\[\]:]*))(?::(?P<port>[0-9]{0,5}))?",
                     re.ASCII)
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*", re.ASCII)
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Left as they are in a path or query: RFC 3986's reserved and unreserved characters,
#: and '%' so existing escapes stay escapes. Anything else (non-ASCII) is UTF-8 escaped.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class UrlPolicyError(ValueError):
    """A URL or address we will not deliver to; the message says why."""


@dataclass(frozen=True)
class Target:
    """A URL taken apart the way the delivery client connects to it."""

    scheme: str
    #: Lower-case ASCII; an IPv6 literal without brackets.
    host: str
    #: The address, when the host is a literal; None for a name resolved at delivery.
    address: Address | None
    #: None: the scheme's default.
    port: int | None
    #: Path and query, escaped.
    rest: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if isinstance(self.address, ipaddress.IPv6Address) else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}{self.rest}"


def parse_target(url: str) -> Target:
    """The URL as the client will use it, or UrlPolicyError saying what does not parse."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlPolicyError(f"longer than {MAX_URL_LENGTH} characters")
    if any(c <= " " or c == "\x7f" for c in url):
        # urlsplit silently drops tabs and newlines; the URL we store must be the one checked.
        raise UrlPolicyError("must not contain spaces or control characters")
    if "\\" in url:
        # Browsers read a backslash as '/', urlsplit as part of the host: never guess.
        raise UrlPolicyError("must not contain backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UrlPolicyError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlPolicyError("must be an http(s) URL")
    if not parts.netloc:
        raise UrlPolicyError("has no host")
    if "@" in parts.netloc:
        raise UrlPolicyError("must not carry credentials")
    found = _NETLOC.fullmatch(parts.netloc)
    if found is None:
        raise UrlPolicyError("has no valid host[:port]")
    address: Address | None
    if found["ipv6"] is not None:
        host, address = _ipv6(found["ipv6"])
    else:
        host, address = _host(found["host"])
    port = _port(found["port"], scheme)
    rest = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        rest += "?" + quote(parts.query, safe=_QUERY_SAFE)
    # The fragment is dropped: it is never sent.
    target = Target(scheme, host, address, port, rest)
    if len(target.url) > MAX_URL_LENGTH:
        # Escaping and IDNA lengthen a URL (é is %C3%A9): the bound holds for the form we
        # store and send, or that form would be refused when checked again (a stored URL
        # is: by the control agent, on every delivery).
        raise UrlPolicyError(f"longer than {MAX_URL_LENGTH} characters once escaped")
    return target


def _ipv6(text: str) -> tuple[str, Address]:
    if "%" in text:
        raise UrlPolicyError("IPv6 zone ids are not allowed")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise UrlPolicyError(f"[{text}] is not a valid IPv6 address") from None
    return address.compressed, address


def _host(raw: str) -> tuple[str, Address | None]:
    if not raw:
        raise UrlPolicyError("has no host")
    if "%" in raw:
        raise UrlPolicyError("percent-encoded hosts are not allowed")
    host = raw.lower()
    if not host.isascii():
        try:
            host = idna.encode(raw, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UrlPolicyError(f"{raw} is not a valid internationalised host name") from None
    if host.endswith("."):
        host = host[:-1]  # the root label: example.com. is example.com
    labels = host.split(".")
    if not host or any(not label for label in labels):
        raise UrlPolicyError("host has an empty label")
    if not _HOST_NAME.fullmatch(host):
        raise UrlPolicyError(f"host {host} holds characters a host name cannot")
    if _NUMBER.fullmatch(labels[-1]):
        return _ipv4(host)
    if len(host) > MAX_HOST or any(len(label) > MAX_LABEL for label in labels):
        raise UrlPolicyError(f"host name longer than {MAX_HOST} characters, or a label "
                             f"longer than {MAX_LABEL}")
    return host, None


def _ipv4(host: str) -> tuple[str, Address]:
    """A host ending in a number names an IPv4 address, in any form inet_aton reads."""
    try:
        address = ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        raise UrlPolicyError(f"{host} is not a valid IPv4 address") from None
    return str(address), address


def _port(raw: str | None, scheme: str) -> int | None:
    if not raw:
        return None  # `host:` is the default port, as in a browser
    port = int(raw)
    if not 1 <= port <= 65535:
        raise UrlPolicyError(f"port {raw} is not between 1 and 65535")
    return None if port == _DEFAULT_PORTS[scheme] else port


def literal_address(host: str) -> Address | None:
    """The address a host names without DNS (any form the client would read as one), or
    None for a name that is resolved. Raises UrlPolicyError for a host that is neither."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        return _ipv6(host[1:-1])[1]
    if ":" in host:
        return _ipv6(host)[1]
    return _host(host)[1]


def _is_public_ip(ip: Address) -> bool:
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local
        or ip.is_reserved or ip.is_unspecified
    )


def is_public_ip(ip: Address) -> bool:
    """True only for globally routable unicast addresses.

    IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo) are judged by that too.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not _is_public_ip(ip):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        return all(_is_public_ip(v4) for v4 in embedded if v4 is not None)
    return True


def is_public_address(address: str) -> bool:
    """`is_public_ip` of an address as text (a resolver's answer); False if it is none."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return is_public_ip(ip)


def check_url(url: str, *, allow_insecure: bool) -> str:
    """The URL in the form to store and deliver to, if we may; else UrlPolicyError.

    Hostnames are checked again after DNS resolution, and every address at connect time.
    """
    target = parse_target(url)
    if allow_insecure:
        return target.url
    if target.scheme != "https":
        raise UrlPolicyError("must use https (set HOOKSTREAM_ALLOW_INSECURE_TARGETS=1 for dev)")
    if target.address is not None:
        if not is_public_ip(target.address):
            raise UrlPolicyError(f"{target.host} is not a public address")
        return target.url
    if target.host == "localhost" or target.host.endswith(".localhost"):
        raise UrlPolicyError("points at this machine")
    if "." not in target.host:
        # A single label is completed from the resolver's search domains: internal names.
        raise UrlPolicyError(f"{target.host} is not a fully qualified host name")
    return target.url


def path_segment(text: str) -> str:
    """`text` as one segment of a URL path, whatever it holds: `a/../b` or `..` cannot reach
    another path once a client or server normalizes it (the CLI and the console call the
    API with webhook ids as given)."""
    segment = quote(text, safe="", errors="backslashreplace")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment
