"""The URL policy and the HTTP client agree on the host, for every hostile URL we can spell.

Differential: whatever the policy accepts is parsed again by the parsers the delivery
client really uses (httpx, then yarl inside aiohttp) and by libc's numeric-host rule (what
getaddrinfo connects to without DNS). They must all name the host the policy judged, and in
secure mode that host must be a public address or a name (vetted again when resolved).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

import httpx
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.api.validation import ApiError
from streams.api.validation import url as api_url
from streams.core.urls import (
    Address,
    Target,
    UrlPolicyError,
    check_url,
    is_public_ip,
    parse_target,
    path_segment,
)

from ..support.hostile_urls import PRIVATE_HOST, hostile_url

EXAMPLES = 2000


def _numeric(host: str) -> Address | None:
    """The address libc connects to for `host` without asking DNS, or None for a name."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def _names_target(host: str, target: Target) -> bool:
    if target.address is not None:
        try:
            return ipaddress.ip_address(host.strip("[]")) == target.address
        except ValueError:
            return False
    return host == target.host


def _client_hosts(url: str) -> list[str]:
    """The host as httpx and yarl read `url`, where they read it at all."""
    hosts = []
    with contextlib.suppress(httpx.InvalidURL, UnicodeError, ValueError):
        hosts.append(httpx.URL(url).raw_host.decode("ascii"))
    try:
        raw = yarl.URL(url).raw_host
        if raw is not None:
            hosts.append(raw)
    except (ValueError, UnicodeError, TypeError):
        pass
    return hosts


def _check(url: str, *, insecure: bool) -> None:
    try:
        stored = check_url(url, allow_insecure=insecure)
    except UrlPolicyError:
        return
    target = parse_target(stored)
    assert check_url(stored, allow_insecure=insecure) == stored, "not a fixed point"
    # The client is given `stored`: httpx's parse, and yarl's of what httpx sends on.
    sent = httpx.URL(stored)
    assert _names_target(sent.raw_host.decode("ascii"), target), (url, stored)
    assert yarl.URL(str(sent)).raw_host is not None
    assert _names_target(str(yarl.URL(str(sent)).raw_host), target), (url, stored)
    # Had the client been given the URL as pasted, a literal it read is the one judged.
    for host in _client_hosts(url):
        numeric = _numeric(host)
        assert numeric is None or numeric == target.address, (url, host, stored)
    stored_numeric = _numeric(target.host)
    assert stored_numeric == target.address, (url, stored)
    if not insecure:
        assert target.scheme == "https"
        assert target.address is None or is_public_ip(target.address), (url, stored)
        assert target.host != "localhost" and not target.host.endswith(".localhost")


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(hostile_url())
def test_what_the_policy_accepts_is_what_the_client_connects_to(url: str) -> None:
    _check(url, insecure=False)
    _check(url, insecure=True)


@given(st.one_of(hostile_url(), st.builds(
    lambda head, tail: head + tail, hostile_url(),
    # Letters and digits of any script: each escapes to up to 12 characters.
    st.text(st.characters(categories=("L", "N")), min_size=150, max_size=2100))))
@settings(max_examples=EXAMPLES // 4, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_what_the_policy_returns_it_accepts_again_unchanged(url: str) -> None:
    # The control agent and every delivery check the stored form again: a form the
    # policy would refuse (escaping made it too long, say) must be refused up front.
    for insecure in (True, False):
        try:
            stored = check_url(url, allow_insecure=insecure)
        except UrlPolicyError:
            continue
        assert check_url(stored, allow_insecure=insecure) == stored


@pytest.mark.parametrize("insecure", [True, False])
def test_a_url_that_escaping_makes_too_long_is_refused_up_front(insecure: bool) -> None:
    url = "https://1.1.1.1/" + "é" * 1000  # 1,016 characters; 6,016 escaped
    with pytest.raises(UrlPolicyError, match="longer than 2048 characters once escaped"):
        check_url(url, allow_insecure=insecure)


@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile_url(host=PRIVATE_HOST))
def test_no_spelling_of_a_private_address_passes_secure_mode(url: str) -> None:
    try:
        stored = check_url(url, allow_insecure=False)
    except UrlPolicyError:
        return
    raise AssertionError(f"{url!r} accepted as {stored!r}")


@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_url(), st.text(max_size=60), st.integers(), st.none(),
                 st.lists(st.text(max_size=5), max_size=2)))
def test_the_api_answers_a_bad_url_with_a_400_naming_it(value: object) -> None:
    try:
        api_url(value, allow_insecure=False)
    except ApiError as exc:
        assert exc.status == 400 and exc.field == "url", exc.body()


@given(st.text(st.characters(exclude_categories=())))
def test_any_text_is_one_path_segment(text: str) -> None:
    # Webhook ids reach the API's paths from the CLI and the console: `a/../b` named b.
    segment = path_segment(text)
    assert segment.isascii() and "/" not in segment and "?" not in segment
    assert "#" not in segment and segment not in (".", "..")
    for base in ("http://h/v1/webhooks/", "https://h/console/webhooks/"):
        sent = httpx.URL(f"{base}{segment}/test").raw_path.decode("ascii")  # as on the wire
        assert sent.count("/") == base.count("/") - 1 and sent.endswith("/test"), sent
