"""Signed POSTs over HTTP/1.1 on the event loop's transports, answers parsed by httptools.

The delivery client's connections (`DeliveryClient` uses this unless deliveries leave
through an egress proxy, which stays on aiohttp). Why not aiohttp here: `make bench` (t)
measured this path at 2.07x bare aiohttp's rate (4,977 vs 2,404 signed POSTs a second,
200 concurrent), and apart, on uvloop, at 0.09-0.12 CPU-s per 1,000 POSTs against
aiohttp's 0.29-0.40. aiohttp's request and response objects, header multidicts, tracing
signals and per-request timers serve request shapes a webhook sender never makes.

What is ours is small; the hard parts stay with libraries. llhttp (Node's parser, through
httptools) frames every answer: by length, chunked, or until the connection closes. The
ssl module and the event loop do TLS. A request has one shape: POST, the target in origin
form, Host, User-Agent, Content-Length and the caller's headers, each checked again here
so no CR, LF or NUL reaches the wire whatever was stored. No pipelining, no redirects
(a 3xx is an answer), no cookies, no decompression (Accept-Encoding is not sent).

Addresses: a host is resolved once per new connection, and a socket is made only for an
address `admit` allowed, and connected to that address: never a second DNS lookup. IP
literals are judged like resolved names. aiohappyeyeballs (aiohttp's) races the addresses
as RFC 8305 says, so a dead first address costs 250 ms, not the attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, cast

import aiohappyeyeballs
import httptools
import yarl

from ..core.headers import CONTROL, FRAMING, TOKEN


class Answer(NamedTuple):
    """What a receiver said: all an attempt reads of a response, and nothing else to copy."""

    status: int
    #: The first `keep` bytes of the body.
    body: bytes
    #: The `Retry-After` header as sent (the first, if repeated), None without one. Read
    #: for every answer: one lookup, cheaper than asking whether the status wants it.
    retry_after: str | None


class BadAnswer(ConnectionError):
    """The receiver's bytes are not an HTTP/1.x response we can read."""


class NoAnswer(ConnectionResetError):
    """The connection closed before a byte of the answer came. (Its name is in the
    attempt's error, which the webhook's owner reads.)"""


#: Response bytes read past what is kept, so a keep-alive connection can be reused; a
#: larger answer closes its connection instead (cheaper than reading it all).
DRAIN_LIMIT = 64 * 1024
#: An answer's head (status line, headers, and any 1xx answers before it) is refused past
#: this: an endless header or a flood of 1xx answers otherwise burns CPU and memory until
#: the attempt's timeout. aiohttp allows 8 KiB a line and 128 headers; this is 64 KiB all.
HEAD_LIMIT = 64 * 1024
#: A request this large may be partly unsent when its answer comes, unseen (see
#: _Connection._maybe_unsent): its connection is never reused. Webhook bodies rarely are.
UNSEEN_UNSENT = 64 * 1024
#: Happy Eyeballs (RFC 8305): the next address is tried this long after the last one
#: started connecting, so one silent address does not cost the whole attempt's timeout.
#: 250 ms is the RFC's and aiohttp's figure.
NEXT_ADDRESS_S = 0.25
#: An idle connection older than this is closed, not reused: servers drop idle keep-alive
#: connections after a while (nginx's default is 75 s), and one dropped just as a request
#: goes out costs a retry.
IDLE_S = 30.0

#: A host as the URL policy leaves it: an IDNA (ASCII) name, a dotted quad, or an IPv6
#: literal (checked further by ipaddress).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+:[0-9A-Fa-f:.]*")
#: A request target in origin form: visible ASCII only (yarl has escaped the rest).
_TARGET = re.compile(r"/[\x21-\x7e]*")
_RETRY_AFTER = b"retry-after"
#: What a head holds besides its reason phrase and headers: "HTTP/1.1 200 ", its CRLF and
#: the blank line's (a flood of bare 1xx answers counts toward HEAD_LIMIT by these).
_LEAST_HEAD = len(b"HTTP/1.1 200 \r\n\r\n")


class Origin(NamedTuple):
    tls: bool
    #: As in the URL: IDNA ASCII, an IPv6 literal without its brackets.
    host: str
    port: int


def route(url: yarl.URL, user_agent: str) -> tuple[Origin, bytes]:
    """Where `url` is sent and its request's first lines (callers remember them: webhook
    URLs repeat on every delivery). Raises ValueError for a URL no request can carry."""
    if url.scheme not in ("http", "https"):
        raise ValueError(f"cannot POST to a {url.scheme!r} URL")
    host, port = url.raw_host, url.port
    if not host or port is None:
        raise ValueError("the URL has no host")
    if not _HOST.fullmatch(host) or (":" in host and not _is_ipv6(host)):
        raise ValueError("the URL's host is not a name or an address a request can carry")
    target = url.raw_path_qs or "/"
    if not _TARGET.fullmatch(target):
        raise ValueError("the URL's path holds characters a request line cannot carry")
    authority = f"[{host}]" if ":" in host else host
    if not url.is_default_port():
        authority = f"{authority}:{port}"
    head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n" \
           "Accept: */*\r\n"
    return Origin(url.scheme == "https", host, port), head.encode("ascii")


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def frame(head: bytes, headers: dict[str, str], body: bytes) -> bytes:
    """The whole request. Raises ValueError for a header that cannot be sent as it is."""
    lines = [f"Content-Length: {len(body)}\r\n"]
    for name, value in headers.items():
        # The header rules' own tests (stored rows are checked again here); non-ASCII
        # fails the ASCII encoding below.
        if not TOKEN.fullmatch(name) or CONTROL.search(value):
            raise ValueError(f"header {name!r} cannot be sent: not a token, or a control "
                             "character in its value")
        if name.lower() in FRAMING:
            raise ValueError(f"header {name!r} is written by the connection, not the caller")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return head + "".join(lines).encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One connection, one request at a time: bytes in, an Answer out."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._parser = httptools.HttpResponseParser(self)
        # What aiohttp's parser lets through too: a bare LF for CRLF, and spaces after a
        # chunk's size. Receivers written by hand send both, and their answers are
        # unambiguous; still refused: bad framing (two lengths, a length and chunked).
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True,
                                              lenient_spaces_after_chunk_size=True)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._keep = 0
        self._kept = bytearray()
        self._seen = 0
        #: Bytes fed for the request under way, and the bytes of its heads (1xx included)
        #: as parsed (but for optional spaces): both held to HEAD_LIMIT.
        self._fed = 0
        self._head = 0
        #: The request under way may still be partly unsent when its answer comes: over
        #: TLS the bytes below the TLS layer cannot be seen, and on TCP those in the
        #: kernel's buffer cannot. Such a connection is not reused, and is aborted.
        self._maybe_unsent = False
        self._retry_after: str | None = None
        self._status = 0
        self.closed = False
        #: Whether the connection can carry another request once the waiter is answered.
        self.reusable = False
        self.idle_since = 0.0

    def send(self, request: bytes, keep: int) -> asyncio.Future[Answer]:
        assert self._transport is not None and self._waiter is None
        if self.closed or self._transport.is_closing():
            # Closed since it was made or idled (a TLS peer may close straight after the
            # handshake): a write would be dropped and the answer never come.
            raise NoAnswer("the receiver closed the connection before the request")
        self._maybe_unsent = len(request) > UNSEEN_UNSENT
        self._keep, self._kept, self._seen, self._fed, self._head = keep, bytearray(), 0, 0, 0
        self._retry_after, self._status = None, 0
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        """Closes an idle connection; one with a request under way or bytes unsent is
        dropped instead (`close` would wait for a receiver that may never read them), and
        so is every TLS one: a polite TLS close sends close_notify and waits up to 30 s
        (uvloop's shutdown timeout) for the receiver's, holding the socket. A receiver that
        never answers it kept one descriptor per delivery for 30 s (200 deliveries: 200
        descriptors), so enough traffic to it would exhaust the worker's for every tenant;
        the answer was read whole, so nothing is lost without the courtesy."""
        self.reusable = False
        if self._transport is not None and not self.closed:
            if (self._waiter is None and not self._maybe_unsent and not self.origin.tls
                    and not self._transport.get_write_buffer_size()):
                self._transport.close()
            else:
                self._transport.abort()

    def drop(self) -> None:
        """Closes now, in the middle of an exchange: nothing unsent is worth waiting for."""
        self.reusable = False
        if self._transport is not None and not self.closed:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: never reuse this connection
            self.drop()
            return
        self._fed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("the receiver switched protocols"))
            return
        except httptools.HttpParserError as exc:
            # Our callbacks' own BadAnswer comes back as the context of llhttp's error.
            ours = exc.__context__
            self._fail(ours if isinstance(ours, BadAnswer)
                       else BadAnswer(f"malformed response: {exc}"))
            return
        if self._waiter is None:
            return
        if not self._status and self._fed > HEAD_LIMIT:  # a head not yet whole, too long
            self._fail(_head_too_large())
        elif self._fed > HEAD_LIMIT + DRAIN_LIMIT:  # endless trailers, or chunk framing
            self._answer()
            self.drop()

    def eof_received(self) -> bool | None:
        self.reusable = False  # the receiver is done sending: no further answer can come
        return None  # so the transport closes; connection_lost settles a request under way

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None:
            return
        if self._status:
            # Headers came: the status stands, the body is what came (a body framed by
            # the connection's close ends here too).
            self._answer()
        elif not self._fed:  # not a byte of the answer came
            self._fail(NoAnswer("the receiver closed the connection without answering"))
        else:
            self._fail(BadAnswer("the connection closed in the middle of the answer's head"))

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer begins: even half of one is too many
            self.drop()
            return
        self._count_head(_LEAST_HEAD)

    def on_status(self, reason: bytes) -> None:
        self._count_head(len(reason))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._status:  # a trailer: the answer's terms were read from its head
            return
        self._count_head(len(name) + len(value) + 4)
        if self._retry_after is None and name.lower() == _RETRY_AFTER:
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:
            return
        if len(self._kept) < self._keep:
            self._kept += body[:self._keep - len(self._kept)]
        self._seen += len(body)
        if self._seen > DRAIN_LIMIT:
            self._answer()
            self.drop()

    def on_message_complete(self) -> None:
        if self._waiter is None:
            self.drop()  # a second answer to one request: never reuse this connection
            return
        if self._status < 200:  # 1xx: informational, the answer follows with its own terms
            self._status, self._retry_after = 0, None
            return
        # An answer can come before the request was all sent (a 413 at the headers): the
        # rest would be read as the next request's start, so such a connection is done.
        keep_alive = (self._parser.should_keep_alive() and not self._maybe_unsent
                      and self._transport is not None
                      and not self._transport.get_write_buffer_size())
        self._answer()
        self.reusable = keep_alive and not self.closed

    def _count_head(self, size: int) -> None:
        """Holds a head that came whole in one read to the limit, too."""
        self._head += size
        if self._head > HEAD_LIMIT:
            raise _head_too_large()

    def _answer(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, bytes(self._kept), self._retry_after))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.drop()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _head_too_large() -> BadAnswer:
    return BadAnswer(f"the answer's head is over {HEAD_LIMIT} bytes")


Admit = Callable[[str], bool]
#: getaddrinfo's rows: (family, socket type, protocol, canonical name, socket address).
AddrInfo = tuple[int, int, int, str, Any]
#: (host, port) -> the host's addresses, as the event loop's getaddrinfo gives them.
Resolve = Callable[[str, int], Awaitable[Sequence[AddrInfo]]]


def _fresh(connection: _Connection, now: float) -> bool:
    return connection.reusable and now - connection.idle_since < IDLE_S


class Wire:
    """Connections kept per origin, at most `limit` idle ones in all.

    `admit(address)` judges every address before a socket is made for it (None admits
    all); `refused(host)` is the error when none of a host's addresses is admitted.
    `resolve` looks names up (the event loop's getaddrinfo unless given).
    Callers bound each post in time (the attempt's timeout): a cancelled post closes its
    connection, which is then never reused.
    """

    def __init__(self, *, limit: int, tls: ssl.SSLContext, admit: Admit | None,
                 refused: Callable[[str], OSError], resolve: Resolve | None = None) -> None:
        self._limit = limit
        self._resolve = resolve or _getaddrinfo
        self._tls = tls
        self._admit = admit
        self._refused = refused
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._swept = 0.0

    async def post(self, origin: Origin, request: bytes, keep: int) -> Answer:
        connection = self._reused(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, request, keep)
            except NoAnswer:
                pass  # closed while idle, just as we sent: once more, on a new connection
        return await self._exchange(await self._open(origin), request, keep)

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def _exchange(self, connection: _Connection, request: bytes, keep: int) -> Answer:
        try:
            answer = await connection.send(request, keep)
        except BaseException:
            connection.drop()
            raise
        self._put_back(connection)
        return answer

    def _reused(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()  # the most recent: the least likely to be stale
            self._idle_count -= 1
            if _fresh(connection, now):
                return connection
            connection.close()
        return None

    def _put_back(self, connection: _Connection) -> None:
        if not connection.reusable or self._idle_count >= self._limit:
            connection.close()
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1
        if now - self._swept > IDLE_S:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Closes what is no longer fresh, so a host written to once holds no socket."""
        self._swept = now
        for origin, idle in list(self._idle.items()):
            fresh = []
            for connection in idle:
                if _fresh(connection, now):
                    fresh.append(connection)
                else:
                    connection.close()
            self._idle_count -= len(idle) - len(fresh)
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]

    async def _open(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        addresses = await self._addresses(origin)
        try:
            sock = await aiohappyeyeballs.start_connection(
                addresses, happy_eyeballs_delay=NEXT_ADDRESS_S, socket_factory=_socket)
        except RuntimeError as exc:  # uvloop's word for some connect failures
            raise OSError(str(exc)) from exc
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(origin), sock=sock, ssl=self._tls if origin.tls else None,
                server_hostname=origin.host if origin.tls else None)
        except BaseException:
            sock.close()
            raise
        return connection

    async def _addresses(self, origin: Origin) -> list[AddrInfo]:
        """The addresses to connect to, every one admitted, in the resolver's order."""
        try:
            literal = ipaddress.ip_address(origin.host)
        except ValueError:
            try:
                infos = await self._resolve(origin.host, origin.port)
            except OSError:
                if self._admit is not None:
                    raise self._refused(origin.host) from None
                raise
            found = list(infos)
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            found = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                      (origin.host, origin.port))]
        if self._admit is not None:
            found = [info for info in found if self._admit(str(info[4][0]))]
        if not found:
            raise self._refused(origin.host)
        return found


async def _getaddrinfo(host: str, port: int) -> Sequence[AddrInfo]:
    # AI_ADDRCONFIG: no IPv6 addresses on a host without IPv6, and so on.
    return await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)


def _socket(info: AddrInfo) -> socket.socket:
    # A stream socket whatever the resolver's row says: a datagram one would "connect" at
    # once and fail later.
    sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock
