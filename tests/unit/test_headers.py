"""Custom headers: whatever we accept is sent unchanged by httpx (the client's request model),
passes h11's RFC 9110 grammar, and reads back unchanged through aiohttp's header parser (a
receiver's); the refusals by example; and nothing but HeaderError for any input."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from aiohttp.http_parser import HeadersParser
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.headers import (
    MAX_HEADERS,
    MAX_TOTAL_BYTES,
    RESERVED,
    HeaderError,
    check_custom_headers,
    check_stored_headers,
)
from streams.core.secretbox import SecretBox, generate_master_key

FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True)

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
NAMES = st.text(TCHAR, min_size=1, max_size=12) | st.text(max_size=6) | st.sampled_from(
    ["Host", "content-type", "X-Webhook-Signature", "webhook-id", "Proxy-Authorization",
     "TE", "X-Api-Key", "Authorization"])
VALUES = (st.text(string.printable, max_size=30)
          | st.text(st.characters(max_codepoint=0x7f), max_size=20)
          | st.text(max_size=10))
HEADERS = st.dictionaries(NAMES, VALUES, max_size=MAX_HEADERS + 2)
#: Mostly acceptable sets, so the differential test is not only about refusals.
VCHAR = "".join(map(chr, range(0x21, 0x7f)))
_EDGE = st.characters(codec="ascii", min_codepoint=0x21, max_codepoint=0x7e)
_INNER = st.text(VCHAR + " \t", max_size=40)
PLAUSIBLE = st.dictionaries(
    st.text(TCHAR, min_size=1, max_size=12),
    st.just("") | _EDGE | st.builds(lambda a, mid, b: a + mid + b, _EDGE, _INNER, _EDGE),
    max_size=MAX_HEADERS)


def _accepted(obj: Any) -> dict[str, str] | None:
    try:
        return check_custom_headers(obj)
    except HeaderError:
        return None


def _aiohttp_reads(headers: dict[str, str]) -> list[tuple[str, str]]:
    lines = [f"{k}: {v}".encode() for k, v in headers.items()]
    parsed, _ = HeadersParser().parse_headers([*lines, b""])
    return list(parsed.items())


@FAST
@given(HEADERS | PLAUSIBLE)
def test_accepted_headers_are_sent_and_read_unchanged(obj: dict[str, str]) -> None:
    accepted = _accepted(obj)
    if accepted is None:
        return
    assert accepted == obj
    request = httpx.Request("POST", "https://example.com/hook", headers=accepted)
    for name, value in accepted.items():
        assert request.headers[name] == value
    h11.Request(method="POST", target="/hook",
                headers=[("Host", "example.com"), *accepted.items()])
    assert _aiohttp_reads(accepted) == list(accepted.items())


@FAST
@given(NAMES, VALUES)
def test_one_header_is_accepted_exactly_when_the_grammar_allows_it(name: str,
                                                                    value: str) -> None:
    """h11's grammar (token names; field values without surrounding whitespace), narrowed by
    our own rules: ASCII, no controls but HTAB, not reserved."""
    try:
        h11.Request(method="POST", target="/",
                    headers=[("Host", "example.com"), (name.encode("latin-1"),
                                                       value.encode("latin-1"))])
        grammatical = True
    except (h11.LocalProtocolError, UnicodeEncodeError):
        grammatical = False
    lower = name.lower()
    ours = (value.isascii() and not any((c < " " and c != "\t") or c == "\x7f" for c in value)
            and lower not in RESERVED
            and not lower.startswith(("x-webhook-", "webhook-", "proxy-")))
    assert (_accepted({name: value}) is not None) is (grammatical and ours), (name, value)


@FAST
@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text()),
                 st.dictionaries(st.integers() | st.text(), st.integers() | st.text()
                                 | st.none())))
def test_anything_else_is_a_header_error(obj: Any) -> None:
    _accepted(obj)  # HeaderError is caught; any other exception fails the test


@pytest.mark.parametrize(("headers", "message"), [
    ([], "headers: must be an object"),
    ({"X-A": 1}, "headers.X-A: the value must be a string"),
    ({"X A": "v"}, 'headers["X A"]: not a valid header name'),
    ({"X-A: b": "v"}, 'headers["X-A: b"]: not a valid header name'),
    ({"X-A\r\nX-B": "v"}, 'headers["X-A\\r\\nX-B"]: not a valid header name'),
    ({"": "v"}, 'headers[""]: not a valid header name'),
    ({"host": "v"}, "headers.host: reserved (set from the webhook's URL)"),
    ({"Content-Length": "1"}, "headers.Content-Length: reserved"),
    ({"CONTENT-TYPE": "text/plain"}, "headers.CONTENT-TYPE: reserved"),
    ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding: reserved"),
    ({"Connection": "close"}, "headers.Connection: reserved (a hop-by-hop header"),
    ({"Keep-Alive": "5"}, "headers.Keep-Alive: reserved (a hop-by-hop"),
    ({"Upgrade": "h2c"}, "headers.Upgrade: reserved (a hop-by-hop"),
    ({"te": "trailers"}, "headers.te: reserved (a hop-by-hop"),
    ({"Trailer": "X"}, "headers.Trailer: reserved (a hop-by-hop"),
    ({"User-Agent": "me"}, "headers.User-Agent: reserved"),
    ({"Proxy-Authorization": "Basic x"}, "headers.Proxy-Authorization: reserved (read by"),
    ({"x-webhook-signature": "sha256=0"}, "headers.x-webhook-signature: reserved (reserved "
                                          "for hookstream"),
    ({"Webhook-Id": "msg_1"}, "headers.Webhook-Id: reserved (reserved for Standard"),
    ({"X-A": "a\r\nX-B: b"}, "headers.X-A: the value holds a control character"),
    ({"X-A": "a\x00"}, "headers.X-A: the value holds a control character"),
    ({"X-A": "a\x7f"}, "headers.X-A: the value holds a control character"),
    ({"X-A": "café"}, "headers.X-A: the value must be ASCII"),
    ({"X-A": " a"}, "headers.X-A: the value must not begin or end with a space or tab"),
    ({"X-A": "a\t"}, "headers.X-A: the value must not begin or end"),
    ({"X-Token": "a", "x-token": "b"}, "headers.x-token: the same header as X-Token"),
    ({f"X-{i}": "v" for i in range(MAX_HEADERS + 1)}, "headers: 21 headers, over the 20"),
    ({"X-A": "v" * (MAX_TOTAL_BYTES - 2)}, "headers: 4097 bytes of names and values, over"),
])
def test_refusals_name_the_header(headers: Any, message: str) -> None:
    with pytest.raises(HeaderError) as caught:
        check_custom_headers(headers)
    assert str(caught.value).startswith(message)
    # The field is kept apart from the reason: a quoted name may itself hold ": ".
    assert message.startswith(f"{caught.value.field}: ")
    assert str(caught.value) == f"{caught.value.field}: {caught.value.reason}"


def test_what_is_accepted() -> None:
    headers = {"Authorization": "Bearer t0k3n", "X-Empty": "", "X-Tab": "a\tb c",
               "X-Api-Key": "!#$%&'*+-.^_`|~", "x-a": "v" * (MAX_TOTAL_BYTES - 100)}
    headers["X-Fill"] = "v" * (MAX_TOTAL_BYTES - sum(len(k) + len(v)
                                                     for k, v in headers.items()) - 6)
    assert check_custom_headers(headers) == headers
    assert check_custom_headers({f"X-{i}": "v" for i in range(MAX_HEADERS)})


def test_stored_headers_judge_sealed_values_by_name_only() -> None:
    """Commands and stored records carry values sealed: a ciphertext is checked by its
    header's name (its plaintext was checked where it was sealed), anything else in full."""
    box = SecretBox.from_env(generate_master_key("headers"), Path("/nonexistent"))
    sealed = box.seal("Bearer " + "x" * MAX_TOTAL_BYTES)
    assert check_stored_headers({"Authorization": sealed}) == {"Authorization": sealed}
    with pytest.raises(HeaderError, match=r"^headers\.Connection: reserved"):
        check_stored_headers({"Connection": sealed})
    with pytest.raises(HeaderError, match=r"^headers\.X-A: the value holds a control"):
        check_stored_headers({"Authorization": sealed, "X-A": "a\r\nX-B: b"})
    with pytest.raises(HeaderError, match=r"^headers: must be an object"):
        check_stored_headers([("Authorization", sealed)])
