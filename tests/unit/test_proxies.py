"""streams.core.proxies: whose forwarded headers we believe, and what they tell us."""

from __future__ import annotations

import ipaddress

import pytest

from streams.core.proxies import TrustedProxies, parse_address

PROXIES = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])
NONE = TrustedProxies([])


# --- parse_address ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("203.0.113.7", "203.0.113.7"),
    (" 203.0.113.7 ", "203.0.113.7"),
    ("203.0.113.7:51234", "203.0.113.7"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:10.1.2.3", "10.1.2.3"),  # what a dual-stack socket reports for IPv4
    ("[::ffff:10.1.2.3]:80", "10.1.2.3"),
])
def test_parse_address(text: str, expected: str) -> None:
    assert parse_address(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", [None, "", " ", "unknown", "_hidden", "example.com",
                                  "example.com:80", "1.2.3", "1.2.3.4.5", "[::1", "[::1]x",
                                  "[::1]:", "300.1.1.1", "/run/hookstream.sock"])
def test_parse_address_refuses_what_is_not_an_address(text: str | None) -> None:
    assert parse_address(text) is None


# --- trusts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("peer", "trusted"), [
    ("127.0.0.1", True),
    ("127.0.0.2", False),  # /32 means that one address
    ("10.200.3.4", True),
    ("11.0.0.1", False),
    ("::ffff:10.0.0.9", True),
    ("fd12:3456::1", True),
    ("fe80::1", False),
    ("::1", False),  # IPv6 loopback is not 127.0.0.1
    (None, False),
    ("", False),
    ("garbage", False),
])
def test_trusts_peers_inside_the_networks(peer: str | None, trusted: bool) -> None:
    assert PROXIES.trusts(peer) is trusted


def test_trusts_nobody_without_networks() -> None:
    assert not NONE.trusts("127.0.0.1")
    assert not NONE.trusts("10.0.0.1")


def test_trusts_takes_parsed_addresses_too() -> None:
    assert PROXIES.trusts(ipaddress.ip_address("10.0.0.1"))
    assert not PROXIES.trusts(ipaddress.ip_address("192.0.2.1"))


def test_networks_are_parsed_leniently_like_settings() -> None:
    # Settings normalises with strict=False; host bits in a CIDR are not an error here either.
    assert TrustedProxies(["192.168.1.7/24"]).trusts("192.168.1.200")


# --- is_https -----------------------------------------------------------------------------------


def test_a_tls_connection_is_https_whoever_sends_it() -> None:
    assert NONE.is_https("https", "198.51.100.1", [])
    assert NONE.is_https("HTTPS", None, ["http"])


def test_forwarded_https_from_a_trusted_proxy() -> None:
    assert PROXIES.is_https("http", "127.0.0.1", ["https"])
    assert PROXIES.is_https("http", "10.9.8.7", ["HTTPS"])
    assert PROXIES.is_https("http", "::ffff:127.0.0.1", [" https "])


@pytest.mark.parametrize(("peer", "values"), [
    ("127.0.0.2", ["https"]),      # an untrusted peer's header is just text
    ("198.51.100.1", ["https"]),
    (None, ["https"]),
    ("127.0.0.1", []),             # a trusted proxy that did not say
    ("127.0.0.1", ["http"]),
    ("127.0.0.1", [""]),
    ("127.0.0.1", ["https, http"]),  # right-most: what our proxy itself saw
    ("127.0.0.1", ["https", "http"]),  # repeated header: same rule across repeats
    ("127.0.0.1", ["httpsx"]),
])
def test_not_https(peer: str | None, values: list[str]) -> None:
    assert not PROXIES.is_https("http", peer, values)


def test_right_most_forwarded_proto_wins() -> None:
    assert PROXIES.is_https("http", "127.0.0.1", ["http, https"])
    assert PROXIES.is_https("http", "127.0.0.1", ["http", "https"])


def test_no_trusted_proxies_means_headers_never_count() -> None:
    assert not NONE.is_https("http", "127.0.0.1", ["https"])


# --- client_address ------------------------------------------------------------------------------


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    # Straight from the client: the header is whatever it wrote.
    ("198.51.100.1", [], "198.51.100.1"),
    ("198.51.100.1", ["203.0.113.9"], "198.51.100.1"),
    # Through our proxy: the address it saw.
    ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
    ("127.0.0.1", ["203.0.113.9:5555"], "203.0.113.9"),
    # Through two of our proxies.
    ("127.0.0.1", ["203.0.113.9, 10.0.0.5"], "203.0.113.9"),
    ("127.0.0.1", ["203.0.113.9", "10.0.0.5"], "203.0.113.9"),
    # A client that prepends a forged address does not get it believed.
    ("127.0.0.1", ["1.1.1.1, 203.0.113.9"], "203.0.113.9"),
    ("127.0.0.1", ["10.0.0.7, 203.0.113.9"], "203.0.113.9"),
    # Every hop ours: the left-most one we reached.
    ("127.0.0.1", ["10.0.0.6, 10.0.0.5"], "10.0.0.6"),
    # A proxy that forwards nothing, or garbage: the proxy itself.
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", ["unknown"], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.9, garbage"], "127.0.0.1"),
    ("127.0.0.1", ["garbage, 10.0.0.5"], "10.0.0.5"),
    # IPv6, bracketed with a port, IPv4-mapped peers.
    ("::ffff:127.0.0.1", ["[2001:db8::7]:443"], "2001:db8::7"),
    ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
])
def test_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.client_address(peer, forwarded) == client


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert NONE.client_address("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_client_address_of_an_unknown_peer_is_none() -> None:
    assert PROXIES.client_address(None, ["203.0.113.9"]) is None
    assert PROXIES.client_address("not an address", []) is None
