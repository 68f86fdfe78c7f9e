"""Hypothesis strategies for the URLs a hostile tenant would paste.

Every way we know to spell an address so that a URL check sees a name while the client
connects to the address: Unicode full stops and digits, IPv4 shorthand in every base,
IPv6 with embedded IPv4 and zone ids, percent-encoding, userinfo and backslash tricks,
trailing dots, odd ports and whitespace.
"""

from __future__ import annotations

import ipaddress
import string

from hypothesis import strategies as st

#: Addresses a tenant must never reach, and a few public ones for contrast.
PRIVATE_V4 = ["127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1",
              "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1",
              "255.255.255.255", "192.0.0.8"]
PUBLIC_V4 = ["8.8.8.8", "93.184.216.34", "1.1.1.1"]
PRIVATE_V6 = ["::1", "::", "fe80::1", "fd00::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1",
              "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::",
              "2001::1", "2001:db8::1"]
PUBLIC_V6 = ["2606:4700::1111", "2001:4860:4860::8888"]

#: What IDNA (UTS #46) and getaddrinfo read as a full stop.
DOTS = [".", "\u3002", "\uff0e", "\uff61"]
FULLWIDTH_DIGITS = {str(d): chr(0xFF10 + d) for d in range(10)}
MATHEMATICAL_DIGITS = {str(d): chr(0x1D7CE + d) for d in range(10)}  # bold digits
SPACES = [" ", "\t", "\n", "\r", "\x00", "\u00a0", "\u3000", "\u200b", "\ufeff"]


def _octets(address: str) -> list[int]:
    return list(ipaddress.IPv4Address(address).packed)


def ipv4_spelling(draw: st.DrawFn, address: str) -> str:
    """`address` in one of the forms inet_aton reads: 1 to 4 parts, each part decimal,
    octal or hex, with or without leading zeros."""
    octets = _octets(address)
    parts = draw(st.sampled_from([4, 3, 2, 1]))
    if parts == 4:
        numbers = octets
    elif parts == 3:
        numbers = [octets[0], octets[1], octets[2] << 8 | octets[3]]
    elif parts == 2:
        numbers = [octets[0], octets[1] << 16 | octets[2] << 8 | octets[3]]
    else:
        numbers = [int.from_bytes(bytes(octets), "big")]

    def spell(n: int) -> str:
        base = draw(st.sampled_from(["dec", "dec", "oct", "hex", "HEX"]))
        zeros = "0" * draw(st.integers(0, 2))
        if base == "oct":
            return "0" + zeros + format(n, "o")
        if base == "hex":
            return "0x" + zeros + format(n, "x")
        if base == "HEX":
            return "0X" + zeros + format(n, "X")
        return str(n)

    return ".".join(spell(n) for n in numbers)


def unicode_dressing(draw: st.DrawFn, host: str) -> str:
    """The same host with some full stops and digits swapped for look-alikes."""
    out = []
    for char in host:
        if char == "." and draw(st.booleans()):
            out.append(draw(st.sampled_from(DOTS)))
        elif char in string.digits and draw(st.integers(0, 3)) == 0:
            table = draw(st.sampled_from([FULLWIDTH_DIGITS, MATHEMATICAL_DIGITS]))
            out.append(table[char])
        elif char.isascii() and char.isalpha() and draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from([char.upper(), chr(0xFF21 + ord(char.upper()) - 65)])))
        else:
            out.append(char)
    if draw(st.integers(0, 4)) == 0:
        out.append(draw(st.sampled_from(DOTS)))  # a trailing dot
    return "".join(out)


def ipv6_spelling(draw: st.DrawFn, address: str) -> str:
    ip = ipaddress.IPv6Address(address)
    form = draw(st.sampled_from(["compressed", "exploded", "upper", "v4tail"]))
    if form == "exploded":
        text = ip.exploded
    elif form == "upper":
        text = ip.compressed.upper()
    elif form == "v4tail":
        head = ip.exploded.rsplit(":", 2)[0]
        text = head + ":" + str(ipaddress.IPv4Address(ip.packed[-4:]))
    else:
        text = ip.compressed
    if draw(st.integers(0, 5)) == 0:
        text += draw(st.sampled_from(["%25eth0", "%eth0", "%251", "%"]))
    return f"[{text}]"


@st.composite
def _v4(draw: st.DrawFn, addresses: list[str]) -> str:
    return unicode_dressing(draw, ipv4_spelling(draw, draw(st.sampled_from(addresses))))


@st.composite
def _v6(draw: st.DrawFn, addresses: list[str]) -> str:
    return ipv6_spelling(draw, draw(st.sampled_from(addresses)))


_LOCAL_NAMES = st.sampled_from(["localhost", "LOCALHOST", "localhost.", "api.localhost",
                                "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54"])
#: Hosts that all name a non-public address, however they are spelled.
PRIVATE_HOST = st.one_of(_v4(PRIVATE_V4), _v4(PRIVATE_V4), _v6(PRIVATE_V6), _LOCAL_NAMES)

_ASCII_LABEL = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
_UNICODE_LABEL = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                         min_size=1, max_size=8)
_PUNYCODE = st.sampled_from(["xn--bcher-kva", "xn--nxasmq6b", "xn--", "xn--zz-",
                             "XN--BCHER-KVA"])
_LABEL = st.one_of(_ASCII_LABEL, _ASCII_LABEL, _UNICODE_LABEL, _PUNYCODE)


@st.composite
def _name(draw: st.DrawFn) -> str:
    return unicode_dressing(draw, ".".join(draw(st.lists(_LABEL, min_size=1, max_size=4))))


_NUMERIC_JUNK = st.lists(st.integers(0, 2**33).map(str), min_size=1, max_size=5).map(".".join)
_PERCENT = st.sampled_from(PRIVATE_V4 + PUBLIC_V4).map(
    lambda a: "".join(f"%{ord(c):02x}" if c in "17" else c for c in a))
#: Public and private literals in every spelling, names of every kind, junk.
ANY_HOST = st.one_of(PRIVATE_HOST, _v4(PUBLIC_V4), _v6(PUBLIC_V6), _name(), _name(),
                     _NUMERIC_JUNK, _PERCENT, st.text(max_size=20))
_PORT = st.one_of(st.just(""), st.just(":"), st.integers(0, 70000).map(lambda p: f":{p}"),
                  st.sampled_from([":0443", ":\uff18\uff14\uff14\uff13", ":-1", ":443:443"]))
_PATH = st.one_of(st.just("/"), st.just(""), st.text(max_size=20).map(lambda t: "/" + t),
                  st.sampled_from(["/a\\b", "\\@evil.com/", "/#@127.0.0.1", "?x=@127.0.0.1",
                                   "/%2e%2e/"]))


@st.composite
def hostile_url(draw: st.DrawFn, host: st.SearchStrategy[str] | None = None,
                port: int | None = None) -> str:
    """A URL around a drawn host, with userinfo, port, path and whitespace tricks."""
    scheme = draw(st.sampled_from(["https", "https", "HTTPS", "hTTps", "http"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "user:pw@", ":@", "a%40b@",
                                     "example.com@", "example.com\\@"]))
    chosen = draw(host if host is not None else ANY_HOST)
    port_text = f":{port}" if port is not None else draw(_PORT)
    path = draw(_PATH)
    url = f"{scheme}://{userinfo}{chosen}{port_text}{path}"
    if draw(st.integers(0, 6)) == 0:
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(SPACES)) + url[at:]
    return url
