"""The deliveries' own HTTP/1.1 connections (streams.delivery.wire, through DeliveryClient)
against receivers that misbehave on purpose: raw TCP servers on loopback that answer with
scripted bytes. No Kafka.

What a hostile or broken receiver can send: any framing, informational answers, answers
too large to read, a protocol switch, garbage, bytes nobody asked for, silence, a close at
the worst moment. Each must end as an Answer or an OSError (what the attempt records),
within the attempt's time, and never leave a connection in the pool that would hand the
next request a stale or foreign answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.delivery import wire
from streams.delivery.client import DeliveryClient
from streams.delivery.wire import (
    DRAIN_LIMIT,
    HEAD_LIMIT,
    AddrInfo,
    Answer,
    BadAnswer,
    Origin,
    Wire,
    frame,
    route,
)
from streams.settings import Settings

from ..support.raw_receivers import (
    OK,
    Script,
    ScriptedReceiver,
    SelfSignedTLS,
    always,
    self_signed,
)


def _client() -> DeliveryClient:
    return DeliveryClient(Settings.from_env({"HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1",
                                             "HOOKSTREAM_DELIVERY_TIMEOUT": "5"}))


async def _post(client: DeliveryClient, url: str, keep: int = 100) -> Answer:
    async with asyncio.timeout(10):
        return await client.post(url, b'{"n":1}', {"Content-Type": "application/json"}, keep)


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test on both loops: the worker runs uvloop, whose transports differ."""
    global _loop_factory
    _loop_factory = uvloop.new_event_loop if request.param == "uvloop" else None
    yield
    _loop_factory = None


_loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None


def _run(script: Script, body: Callable[[DeliveryClient, ScriptedReceiver], Awaitable[Any]],
         closes: bool = False) -> Any:
    async def main() -> Any:
        async with ScriptedReceiver(script, closes).running() as receiver:
            client = _client()
            try:
                return await body(client, receiver)
            finally:
                await client.aclose()

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(main())





@pytest.mark.parametrize("answer, status, body", [
    (b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello", 201, b"hello"),
    (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n", 500, b"abcdefg"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
     b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", 202, b"ok"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", 200, b"old"),
    (b"HTTP/1.1 429 Slow Down\r\nretry-after: 7\r\nRetry-After: 9\r\nContent-Length: 0\r\n\r\n",
     429, b""),
    # Read as aiohttp reads them: bare LFs, and spaces after a chunk's size.
    (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, b"ok"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2  \r\nok\r\n0\r\n\r\n", 200, b"ok"),
])
def test_every_framing_of_an_answer_reads_the_same(answer: bytes, status: int,
                                                   body: bytes) -> None:
    async def twice(client: DeliveryClient, receiver: ScriptedReceiver) -> list[Answer]:
        return [await _post(client, receiver.url), await _post(client, receiver.url)]

    answers = _run(always(answer), twice)
    assert [(a.status, a.body) for a in answers] == [(status, body)] * 2
    if status == 429:
        assert answers[0].retry_after == "7"  # the first, as sent


@pytest.mark.parametrize("answer", [
    # A 103's headers are about the answer to come, not its terms.
    b"HTTP/1.1 103 Early Hints\r\nRetry-After: 99\r\n\r\n"
    b"HTTP/1.1 429 Slow Down\r\nContent-Length: 0\r\n\r\n",
    # Trailers come after the status was acted on: they cannot set it either.
    b"HTTP/1.1 429 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nRetry-After: 99\r\n\r\n",
])
def test_only_the_final_answer_s_own_headers_set_its_retry_after(answer: bytes) -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Answer:
        return await _post(client, receiver.url)

    assert _run(always(answer), body) == Answer(429, b"", None)


def test_an_answer_framed_by_the_close_is_read_and_the_connection_not_reused() -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        answers = [await _post(client, receiver.url), await _post(client, receiver.url)]
        return [(a.status, a.body) for a in answers], receiver.connections

    # No length, not chunked: the body ends when the receiver closes the connection.
    unframed = b"HTTP/1.1 503 Busy\r\n\r\nunframed body"
    assert _run(always(unframed), body, closes=True) == ([(503, b"unframed body")] * 2, 2)


def test_connections_are_reused_and_keep_only_what_was_asked() -> None:
    big = b"x" * (DRAIN_LIMIT * 4)
    answers = {0: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
               1: b"HTTP/1.1 500 Big\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)}

    async def script(n: int, request: bytes) -> bytes | None:
        return answers.get(n, OK)

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        got = [await _post(client, receiver.url, keep=10) for _ in range(4)]
        return got, receiver.connections

    got, connections = _run(script, body)
    assert [(a.status, a.body) for a in got] == [(200, b"ok"), (500, b"x" * 10),
                                                 (200, b"ok"), (200, b"ok")]
    # The huge answer's connection is closed rather than read through: one more.
    assert connections == 2


def test_a_keep_alive_connection_closed_as_the_request_goes_out_is_retried_once() -> None:
    async def script(n: int, request: bytes) -> bytes | None:
        return OK if n != 1 else None  # the second request, on the first's connection

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        first = await _post(client, receiver.url)
        second = await _post(client, receiver.url)
        return first.status, second.status, receiver.connections, len(receiver.requests)

    assert _run(script, body) == (200, 200, 2, 3)


def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_retry() -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        with pytest.raises(ConnectionResetError, match="without answering"):
            await _post(client, receiver.url)
        return receiver.connections

    assert _run(always(None), body) == 1


@pytest.mark.parametrize("answer, reason", [
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
     "switched protocols"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "malformed response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "malformed"),
    (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "malformed response"),
])
def test_what_is_not_an_answer_is_an_error_and_its_connection_is_dropped(
        answer: bytes, reason: str) -> None:
    async def script(n: int, request: bytes) -> bytes | None:
        return answer if n == 0 else OK

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        with pytest.raises(BadAnswer, match=reason):
            await _post(client, receiver.url)
        after = await _post(client, receiver.url)
        return after.status, receiver.connections

    assert _run(script, body) == (200, 2)


@pytest.mark.parametrize("late", [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate",
                                  b"HTTP/1.1 200 OK\r\nContent-Le"])
def test_bytes_nobody_asked_for_drop_the_connection(late: bytes) -> None:
    async def script(n: int, request: bytes) -> bytes | None:
        # A second, unasked-for answer (whole, or its first half) rides behind the first.
        return OK + (late if n == 0 else b"")

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        answers = [await _post(client, receiver.url) for _ in range(3)]
        return [a.body for a in answers], receiver.connections

    bodies, connections = _run(script, body)
    assert bodies == [b"ok", b"ok", b"ok"]  # never "late", the answer to nothing
    assert connections == 2


def test_a_request_cut_short_by_its_timeout_never_lends_its_connection() -> None:
    release = asyncio.Event()

    async def script(n: int, request: bytes) -> bytes | None:
        if b'"slow"' in request:
            await release.wait()
            return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"
        return OK

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(receiver.url, b'"slow"', {}, 100)
        release.set()  # the late answer now arrives on the abandoned connection
        after = await _post(client, receiver.url)
        return after.body, receiver.connections

    assert _run(script, body) == (b"ok", 2)


@pytest.mark.parametrize("headers", [
    {"X-Evil": "a\r\nInjected: yes"}, {"X-Evil": "a\nb"}, {"X-Evil": "nul\x00"},
    {"Bad Name": "v"}, {"X-Evil:": "v"}, {"": "v"}, {"X-Unicode": "caf\u00e9"},
    # The connection writes these itself: a second one would frame or route the request
    # twice.
    {"HOST": "internal.example"}, {"content-length": "0"}, {"Transfer-Encoding": "chunked"},
    {"Connection": "close"},
])
def test_a_header_that_would_split_the_request_is_refused_before_connecting(
        headers: dict[str, str]) -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        with pytest.raises(ValueError):
            await client.post(receiver.url, b"{}", headers, 10)
        return receiver.connections

    assert _run(always(OK), body) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"HTTP/1.1 ", b"200", b" OK", b"\r\n", b"Content-Length: ",
                              b"Transfer-Encoding: chunked", b"5", b"0", b"hello", b"\n",
                              b":", b" ", b"\x00", b"HTTP/1.0 ", b"100 Continue", b"-1",
                              b"ffffffffffffffffff", b"Connection: close"]),
             max_size=30).map(b"".join)))
def test_any_bytes_from_a_receiver_end_as_an_answer_or_an_oserror(junk: bytes) -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        outcomes: list[int | str] = []
        for _ in range(2):
            try:
                async with asyncio.timeout(1):
                    answer = await client.post(receiver.url, b"{}", {}, 50)
                outcomes.append(answer.status)
            except (OSError, TimeoutError) as exc:
                outcomes.append(type(exc).__name__)
        return outcomes

    outcomes = _run(always(junk), body, closes=True)
    for outcome in outcomes:
        assert isinstance(outcome, str) or 100 <= outcome <= 999


def test_tls_receivers_are_verified_and_spoken_to(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)

    async def main() -> Any:
        client = _client()  # the delivery client's own trust store: not this certificate
        wire = Wire(limit=4, tls=tls.trusting, admit=None, refused=OSError)
        async with ScriptedReceiver(always(OK)).running(tls.server) as receiver:
            try:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await _post(client, receiver.url)
                refused = len(receiver.requests)
                origin, head = route(yarl.URL(receiver.url), "hookstream/test")
                answers = [await wire.post(origin, frame(head, {"X-A": "1"}, b"{}"), 10)
                           for _ in range(3)]
                return refused, [a.body for a in answers], receiver.connections
            finally:
                await client.aclose()
                await wire.aclose()

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        # One connection for the three requests (the refused handshake never completed,
        # so never reached the server's handler).
        assert runner.run(main()) == (0, [b"ok"] * 3, 1)


def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "IDLE_S", 0.0)  # every idle connection is already too old

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        statuses = [(await _post(client, receiver.url)).status for _ in range(3)]
        return statuses, receiver.connections

    assert _run(always(OK), body) == ([200] * 3, 3)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * (HEAD_LIMIT * 2),
    b"HTTP/1.1 100 Continue\r\n\r\n" * (HEAD_LIMIT // 25 + 1) + OK,
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * (HEAD_LIMIT // 11 + 1) + b"\r\n",
])
def test_a_head_past_its_limit_is_an_error_at_once_not_at_the_timeout(answer: bytes) -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        with pytest.raises(BadAnswer, match="head is over"):
            await _post(client, receiver.url)  # bounded at 10 s; the client's timeout is 5
        after = await _post(client, receiver.url)
        return after.status, receiver.connections

    async def script(n: int, request: bytes) -> bytes | None:
        return answer if n == 0 else OK

    assert _run(script, body) == (200, 2)


def test_a_head_just_under_its_limit_is_read() -> None:
    pad = b"X-Pad: " + b"p" * (HEAD_LIMIT - 200) + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\n" + pad + b"Content-Length: 2\r\n\r\nok"

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Answer:
        return await _post(client, receiver.url)

    assert _run(always(answer), body) == Answer(200, b"ok", None)


def test_endless_trailers_end_the_answer_and_its_connection() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
              + b"X-Trailer: t\r\n" * ((HEAD_LIMIT + DRAIN_LIMIT) // 14 + 1))

    async def script(n: int, request: bytes) -> bytes | None:
        return answer if n == 0 else OK

    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        first = await _post(client, receiver.url)
        second = await _post(client, receiver.url)
        return first, second.status, receiver.connections

    assert _run(script, body) == (Answer(200, b"ok", None), 200, 2)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _wire_to(handler: Handler, tls: SelfSignedTLS | None,
                   ) -> AsyncIterator[tuple[Wire, Origin, bytes]]:
    """A loopback server running `handler` (over TLS if given), and a Wire that trusts it:
    the wire, the server's origin and a request head for it."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                        ssl=tls.server if tls else None)
    client = Wire(limit=4, tls=tls.trusting if tls else ssl.create_default_context(),
                  admit=None, refused=OSError)
    try:
        port = server.sockets[0].getsockname()[1]
        origin, head = route(yarl.URL(f"{'https' if tls else 'http'}://127.0.0.1:{port}/"),
                             "hookstream/test")
        yield client, origin, head
    finally:
        await client.aclose()
        server.close()


@pytest.mark.parametrize("tls", [False, True])
def test_a_receiver_that_answers_early_and_never_reads_is_not_waited_on(
        tls: bool, tmp_path: Path) -> None:
    """The answer comes before the request was all sent, and the receiver reads no more:
    the connection is dropped, with its unsent bytes, rather than closed after them (a
    close would wait on that receiver for ever, holding the socket) or lent again. Over
    TLS the unsent bytes sit below the TLS layer, where its buffer size does not show them."""
    size = 32 * 1024 * 1024  # far more than loopback's socket buffers
    contexts = self_signed(tmp_path) if tls else None

    async def main() -> Any:
        answered = asyncio.Event()
        read_after: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def never_reads(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await answered.wait()
            received = 0
            try:  # only now read: a client still sending would send it all, then close
                while chunk := await reader.read(1 << 20):
                    received += len(chunk)
            except OSError:  # reset, or a TLS stream cut without its close_notify
                pass
            read_after.set_result(received)
            writer.close()

        async with _wire_to(never_reads, contexts) as (wire, origin, head), \
                asyncio.timeout(20):
            answer = await wire.post(origin, frame(head, {}, b"x" * size), 10)
            answered.set()
            return answer.status, await read_after

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        status, received = runner.run(main())
    assert status == 413
    assert received < size


@contextlib.contextmanager
def _silent_address() -> Iterator[tuple[str, int]]:
    """An address whose connects hang: a listener whose one-place queue is full drops
    every further SYN (Linux), as a firewalled or dead address does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.create_connection(address, timeout=5)
    try:
        yield address
    finally:
        filler.close()
        listener.close()


def test_a_silent_address_or_one_no_socket_can_reach_costs_a_moment_not_the_attempt() -> None:
    async def body(client: DeliveryClient, receiver: ScriptedReceiver) -> Any:
        live = yarl.URL(receiver.url)
        with _silent_address() as silent:
            unreachable: AddrInfo = (255, socket.SOCK_STREAM, 0, "", ("nowhere", 0))

            async def resolve(host: str, port: int) -> list[AddrInfo]:
                assert (host, port) == ("receiver.test", 443)
                return [unreachable, (socket.AF_INET, socket.SOCK_STREAM, 6, "", silent),
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (live.host, live.port))]

            wire = Wire(limit=4, tls=ssl.create_default_context(), admit=None,
                        refused=OSError, resolve=resolve)
            origin, head = route(yarl.URL("http://receiver.test:443/hook"), "hookstream/test")
            try:
                # The silent address alone would hang for minutes (SYN retries): the
                # next one is tried after NEXT_ADDRESS_S.
                async with asyncio.timeout(5):
                    answer = await wire.post(origin, frame(head, {}, b"{}"), 10)
            finally:
                await wire.aclose()
        return answer.status, receiver.requests[0].split(b"\r\n")[1]

    assert _run(always(OK), body) == (200, b"Host: receiver.test:443")


@pytest.mark.parametrize("tls", [False, True])
def test_a_receiver_that_closes_at_once_is_an_error_not_a_wait(tls: bool,
                                                                tmp_path: Path) -> None:
    """Closed straight after the handshake: the request may find its connection closed
    before it is written, and must then fail at once rather than wait for an answer."""
    contexts = self_signed(tmp_path) if tls else None

    async def main() -> Any:
        async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with _wire_to(closes, contexts) as (wire, origin, head):
            outcomes = []
            for _ in range(3):
                try:
                    async with asyncio.timeout(10):  # the post's own end comes long before
                        await wire.post(origin, frame(head, {}, b"{}"), 10)
                    outcomes.append("answered")
                except OSError as exc:
                    outcomes.append(type(exc).__name__)
            return outcomes

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        outcomes = runner.run(main())
    # Never an answer, never a TimeoutError (which is an OSError: named to be told apart).
    assert outcomes and all(o not in ("answered", "TimeoutError") for o in outcomes)
