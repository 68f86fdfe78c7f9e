"""streams.core.urls: which webhook URLs and addresses we deliver to."""

from __future__ import annotations

import pytest

from streams.core.urls import MAX_URL_LENGTH, UrlPolicyError, check_url, is_public_address

REFUSED_ADDRESSES = [
    "127.0.0.1", "127.255.255.254", "::1",                     # loopback
    "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",  # private
    "169.254.169.254", "fe80::1",                              # link-local
    "100.64.0.1", "100.127.255.254",                           # shared (RFC 6598)
    "224.0.0.1", "ff02::1",                                    # multicast
    "0.0.0.0", "::",                                           # unspecified
    "240.0.0.1", "255.255.255.255",                            # reserved / broadcast
    "fd00::1", "fc00::1",                                      # IPv6 unique-local
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "192.0.0.8", "192.0.2.1", "198.18.0.1", "2001:db8::1",     # special / documentation
]

PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1111",
                    "2001:4860:4860::8888", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize("address", ["", "example.com", "256.0.0.1", "::g", "fe80::1%"])
def test_non_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


def test_zone_id_is_ignored() -> None:
    assert not is_public_address("fe80::1%eth0")


@pytest.mark.parametrize("address", ["fec0::1", "feff::1", "fed0:1::1"])
def test_deprecated_site_local_is_not_public(address: str) -> None:
    assert not is_public_address(address)


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_secure_mode_refuses_ip_literals(address: str) -> None:
    with pytest.raises(UrlPolicyError, match="not a public address"):
        check_url(f"https://{_literal(address)}/hook", allow_insecure=False)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://example.com/hook", "https"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https://:pass@example.com/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://", "no host"),
        ("example.com/hook", "http(s)"),
        ("", "http(s)"),
        ("ftp://example.com/hook", "http(s)"),
        ("javascript:alert(1)", "http(s)"),
        ("file:///etc/passwd", "http(s)"),
        ("https://localhost/hook", "this machine"),
        ("https://LOCALHOST:8443/hook", "this machine"),
        ("https://api.localhost/hook", "this machine"),
        ("https://example.com:0/hook", "port 0"),
        ("https://example.com:99999/hook", "not between 1 and 65535"),
        ("https://example.com:123456/hook", "no valid host"),
        ("https://example.com:abc/hook", "no valid host"),
        ("https://example.com:\uff18\uff14\uff14\uff13/hook", "no valid host"),
        ("https://[::1/hook", "not a valid URL"),
        ("https://[fe80::1%25eth0]/hook", "zone ids"),
        ("https://[fe80::1%eth0]/hook", "zone ids"),
        ("https://[fec0::1]/hook", "not a public address"),
        ("https://127\u30020\u30020\u30021:6066/", "127.0.0.1 is not a public address"),
        ("https://169\uff0e254\uff0e169\uff0e254/latest", "169.254.169.254 is not a public"),
        ("https://10\uff610\uff610\uff611/", "10.0.0.1 is not a public address"),
        ("https://\uff11\uff12\uff17.0.0.1/", "127.0.0.1 is not a public address"),
        ("https://999.1.1.1/", "not a valid IPv4 address"),
        ("https://1.2.3.4.5/", "not a valid IPv4 address"),
        ("https://example.0x/", "not a valid IPv4 address"),
        ("https://exa%6dple.com/", "percent-encoded"),
        ("https://%31%32%37.0.0.1/", "percent-encoded"),
        ("https://example.com\\@127.0.0.1/", "backslashes"),
        ("https://example.com\\.evil/", "backslashes"),
        ("https://a..b.com/", "empty label"),
        ("https://.example.com/", "empty label"),
        ("https://" + "a" * 64 + ".com/", "label longer"),
        ("https://exa!mple.com/", "characters a host name cannot"),
        ("https://exa\uff0fmple.com/", "not a valid"),
        ("https://intranet/hook", "fully qualified"),
        ("https://localhost./hook", "this machine"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
    ],
)
def test_secure_mode_refuses(url: str, fragment: str) -> None:
    with pytest.raises(UrlPolicyError) as info:
        check_url(url, allow_insecure=False)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://93.184.216.34/x",
        "https://[2606:4700::1111]/x",
        "https://example.com:8443/hooks?x=1",
        "https://localhost.example.com/hook",
        "https://xn--bcher-kva.example/hook",
        "https://under_score.example.com/hook",
    ],
)
def test_secure_mode_accepts(url: str) -> None:
    assert check_url(url, allow_insecure=False) == url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM/hook", "https://example.com/hook"),
        ("https://example.com:8443/hooks?x=1#frag", "https://example.com:8443/hooks?x=1"),
        ("https://example.com.:443/x", "https://example.com/x"),
        ("https://example.com:/x", "https://example.com/x"),
        ("https://example.com:08443", "https://example.com:8443/"),
        ("https://b\u00fccher.example/\u00e4?q=\u00fc", "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC"),
        ("https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/", "https://example.com/"),
        ("https://example\u3002com/", "https://example.com/"),
        ("https://8.8.2056/", "https://8.8.8.8/"),
        ("https://134744072/", "https://8.8.8.8/"),
        ("https://[2606:4700:0::1111]/", "https://[2606:4700::1111]/"),
    ],
)
def test_urls_are_kept_in_the_form_the_client_connects_to(url: str, canonical: str) -> None:
    assert check_url(url, allow_insecure=False) == canonical
    assert check_url(canonical, allow_insecure=False) == canonical


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/x", "http://localhost:8000/x", "https://10.0.0.1/x",
     "http://[::1]:9000/x", "http://example.com/hook"],
)
def test_insecure_mode_accepts_local_http(url: str) -> None:
    assert check_url(url, allow_insecure=True) == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://user:pass@127.0.0.1:8000/x", "credentials"),
        ("ftp://127.0.0.1/x", "http(s)"),
        ("gopher://127.0.0.1/x", "http(s)"),
        ("http:///x", "no host"),
        ("http://127.0.0.1:0/x", "port 0"),
    ],
)
def test_insecure_mode_still_refuses(url: str, fragment: str) -> None:
    with pytest.raises(UrlPolicyError) as info:
        check_url(url, allow_insecure=True)
    assert fragment in str(info.value)


def test_url_policy_error_is_value_error() -> None:
    assert issubclass(UrlPolicyError, ValueError)


# -- bugs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["https://127.1/x", "https://2130706433/x", "https://0x7f.0.0.1/x", "https://0177.0.0.1/x",
     "https://0x7f000001/x", "https://10.1/x"],
)
def test_numeric_shorthand_loopback_and_private_refused(url: str) -> None:
    with pytest.raises(UrlPolicyError):
        check_url(url, allow_insecure=False)


@pytest.mark.parametrize("address", ["2002:7f00:1::", "2002:a00:1::", "2002:a9fe:a9fe::"])
def test_6to4_embedding_private_ipv4_is_not_public(address: str) -> None:
    assert not is_public_address(address)
