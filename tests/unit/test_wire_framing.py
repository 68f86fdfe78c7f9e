"""The request bytes streams.delivery.wire writes, read back by a real HTTP parser.

Differential: whatever headers and URL a tenant managed to store, the request we frame is
either refused (ValueError) or read by llhttp (httptools' request parser, the parser of
Node and uvicorn) as exactly one POST with exactly our target, Host, headers and body:
nothing smuggled into a second request, no header split in two.
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.delivery.wire import Origin, _Connection, frame, route

from ..support.hostile_urls import hostile_url

UA = "hookstream/test"


class _Read:
    """What llhttp reads from a request's bytes."""

    def __init__(self, data: bytes) -> None:
        self.messages = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(data)
        self.method = parser.get_method()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.messages += 1


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_nasty = st.sampled_from(["\r\n", "\n", "\r", "\x00", ":", " ", "\t", "\u0085", "\u2028",
                          "\x7f", "é", "X-Injected: 1", "\r\nGET / HTTP/1.1\r\n"])
_field = st.lists(st.one_of(_text, _nasty), max_size=4).map("".join)


@settings(max_examples=300)
@given(st.dictionaries(_field, _field, max_size=5), st.binary(max_size=64))
def test_headers_are_sent_exactly_or_refused(headers: dict[str, str], body: bytes) -> None:
    _, head = route(yarl.URL("https://hooks.example.com/in?x=1"), UA)
    try:
        request = frame(head, headers, body)
    except ValueError:
        return
    read = _Read(request)
    assert (read.messages, read.method, read.url, read.body) == (1, b"POST", b"/in?x=1", body)
    expected = [(b"Host", b"hooks.example.com"), (b"User-Agent", UA.encode()),
                (b"Accept", b"*/*"), (b"Content-Length", str(len(body)).encode())]
    expected += [(name.encode(), value.strip(" \t").encode()) for name, value in headers.items()]
    assert read.headers == expected


@settings(max_examples=300)
@given(hostile_url())
def test_any_url_is_framed_as_its_own_host_and_target_or_refused(url: str) -> None:
    try:
        parsed = yarl.URL(url)
        origin, head = route(parsed, UA)
    except ValueError:
        return
    read = _Read(frame(head, {}, b"{}"))
    host = dict(read.headers)[b"Host"].decode()
    assert read.messages == 1
    assert read.url.decode() == (parsed.raw_path_qs or "/")
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    assert bare.strip("[]") == origin.host == parsed.raw_host
    assert origin.port == parsed.port and origin.tls == (parsed.scheme == "https")


def test_the_default_port_is_left_out_of_host_and_any_other_kept() -> None:
    def host(url: str) -> Any:
        return dict(_Read(frame(route(yarl.URL(url), UA)[1], {}, b"")).headers)[b"Host"]

    assert host("https://a.example/") == b"a.example"
    assert host("https://a.example:443/") == b"a.example"
    assert host("https://a.example:8443/") == b"a.example:8443"
    assert host("http://[2001:db8::1]:8080/") == b"[2001:db8::1]:8080"


class _Transport:
    """What _Connection.close may do to its transport, recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return bool(self.calls)

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")


@pytest.mark.parametrize(("tls", "done"), [(False, "close"), (True, "abort")])
def test_an_idle_tls_connection_is_aborted_not_closed_politely(tls: bool, done: str) -> None:
    # A polite TLS close waits up to 30 s for a close_notify a hostile receiver never sends,
    # holding a descriptor per delivery: enough of them starve every tenant's deliveries.
    connection = _Connection(Origin(tls, "receiver.example", 443))
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    connection.close()
    assert transport.calls == [done]
