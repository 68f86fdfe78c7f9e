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
address `admit` allowed, and connected to that address: never a second lookup. IP
literals are judged like resolved names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import httptools
import yarl

from ..core.headers import CONTROL, TOKEN


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


class _Unanswered(ConnectionResetError):
    """The connection closed before a byte of the answer came."""


#: Response bytes read past what is kept, so a keep-alive connection can be reused; a
#: larger answer closes its connection instead (cheaper than reading it all).
DRAIN_LIMIT = 64 * 1024
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
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return head + "".join(lines).encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One connection, one request at a time: bytes in, an Answer out."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._keep = 0
        self._kept = bytearray()
        self._seen = 0
        self._retry_after: str | None = None
        self._status = 0
        self._heard = False
        self.closed = False
        #: Whether the connection can carry another request once the waiter is answered.
        self.reusable = False
        self.idle_since = 0.0

    def send(self, request: bytes, keep: int) -> asyncio.Future[Answer]:
        assert self._transport is not None and self._waiter is None
        self._keep, self._kept, self._seen = keep, bytearray(), 0
        self._retry_after, self._status, self._heard = None, 0, False
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None and not self.closed:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: never reuse this connection
            self.close()
            return
        self._heard = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("the receiver switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(BadAnswer(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None:
            return
        if self._status:
            # Headers came: the status stands, the body is what came (a body framed by
            # the connection's close ends here too).
            self._answer()
        elif not self._heard:
            self._fail(_Unanswered("the receiver closed the connection without answering"))
        else:
            self._fail(BadAnswer("the connection closed in the middle of the answer's head"))

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
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
            self.close()

    def on_message_complete(self) -> None:
        if self._waiter is None:
            self.close()  # a second answer to one request: never reuse this connection
            return
        if self._status < 200:  # 1xx: informational, the answer follows
            self._status = 0
            return
        keep_alive = self._parser.should_keep_alive()
        self._answer()
        self.reusable = keep_alive and not self.closed

    def _answer(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, bytes(self._kept), self._retry_after))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


Admit = Callable[[str], bool]


def _fresh(connection: _Connection, now: float) -> bool:
    return connection.reusable and now - connection.idle_since < IDLE_S


class Wire:
    """Connections kept per origin, at most `limit` idle ones in all.

    `admit(address)` judges every address before a socket is made for it (None admits
    all); `refused(host)` is the error when none of a host's addresses is admitted.
    Callers bound each post in time (the attempt's timeout): a cancelled post closes its
    connection, which is then never reused.
    """

    def __init__(self, *, limit: int, tls: ssl.SSLContext, admit: Admit | None,
                 refused: Callable[[str], OSError]) -> None:
        self._limit = limit
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
            except _Unanswered:
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
            connection.close()
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
        failure: OSError | None = None
        for family, address in await self._addresses(origin):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), sock=sock, ssl=self._tls if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None)
            except BaseException:
                sock.close()
                raise
            return connection
        assert failure is not None
        raise failure

    async def _addresses(self, origin: Origin) -> list[tuple[int, Any]]:
        """(family, socket address) pairs to try in turn, every one admitted."""
        try:
            literal = ipaddress.ip_address(origin.host)
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    origin.host, origin.port, type=socket.SOCK_STREAM)
            except OSError:
                if self._admit is not None:
                    raise self._refused(origin.host) from None
                raise
            found = [(int(family), address) for family, _, _, _, address in infos]
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            found = [(int(family), (origin.host, origin.port))]
        if self._admit is not None:
            found = [(f, a) for f, a in found if self._admit(str(a[0]))]
        if not found:
            raise self._refused(origin.host)
        return found


