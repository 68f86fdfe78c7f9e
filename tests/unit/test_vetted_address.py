"""DNS rebinding: the delivery client connects only to an address it vetted.

A name whose first answer is public and whose every later answer is 127.0.0.1 is the
rebinding attack: a client that checks one answer and then resolves again to connect
(or lets the connect resolve) reaches inside. The client (streams.delivery.client) must
connect to an address it resolved and judged public, or refuse; never to the second answer.

The seam. DeliveryClient takes no resolver: its only injection point, `transport`, replaces
the aiohttp transport and with it every rule under test, and `_transport()` builds its
PublicOnlyResolver itself. So the fake DNS sits one level down, where that resolver (aiohttp's
ThreadedResolver) and anything else in the process asks: `socket.getaddrinfo`, which the
event loop's `getaddrinfo` calls. The client, its resolver, aiohttp's connector and its
socket guard are all the real ones.

The network: the loop's `sock_connect` records every address a socket is connected to. The
public address is not dialled: a connection to it is carried to a loopback stand-in that
answers 200 (so a delivery that went to the vetted address succeeds). The rebinding target,
127.0.0.1 on the URL's port, is a real listener that counts connections: any connection
there, by any route (an event-loop connect or a blocking one), is the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest

from streams.core.urls import is_public_address
from streams.delivery.client import NOT_PUBLIC, DeliveryClient, resolves_publicly
from streams.settings import Settings

T = TypeVar("T")

NAME = "hooks.rebind.example"
#: A globally routable address (never dialled: see _Net.sock_connect).
VETTED = "93.184.215.14"
INSIDE = "127.0.0.1"
#: What a refused target's error says, from the resolver or the socket guard.
REFUSALS = (NOT_PUBLIC, "is not a public address")


class _Dns:
    """Scripted answers for NAME, one list per lookup (the last repeats); the real system
    resolver for every other name. Counts the lookups of NAME, from any thread."""

    def __init__(self, answers: list[list[str]]) -> None:
        self._answers = answers
        self._real = socket.getaddrinfo
        self._lock = threading.Lock()
        self.lookups = 0

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                    proto: int = 0, flags: int = 0) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name.rstrip(".").lower() != NAME:
            return self._real(host, port, family, type, proto, flags)
        with self._lock:
            answer = self._answers[min(self.lookups, len(self._answers) - 1)]
            self.lookups += 1
        if family not in (0, socket.AF_INET):
            raise socket.gaierror(socket.EAI_NONAME, "no such address of that family")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (address, int(port or 0))) for address in answer]


class _Net(asyncio.SelectorEventLoop):
    """Records every address a socket of this loop is connected to; carries connections
    to VETTED to the stand-in (`vetted_to`), or refuses them when it is None."""

    connects: list[tuple[str, int]]
    vetted_to: tuple[str, int] | None

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        self.connects.append((host, port))
        if host == VETTED:
            if self.vetted_to is None:
                raise ConnectionRefusedError(f"{host}:{port} refused the connection")
            return await super().sock_connect(sock, self.vetted_to)
        if not host.startswith("127."):
            raise ConnectionRefusedError(f"the test network has no route to {host}")
        return await super().sock_connect(sock, address)


def _run(main: Callable[[_Net], Coroutine[Any, Any, T]]) -> T:
    def factory() -> _Net:
        loop = _Net()
        loop.connects = []
        loop.vetted_to = None
        return loop

    async def bounded() -> T:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _Net)
        async with asyncio.timeout(30):
            return await main(loop)

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


class _Inside:
    """The service the rebinding answer points at: counts connections, answers nothing."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Inside]:
        server = await asyncio.start_server(self._on_connect, INSIDE, 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


class _StandIn:
    """Plays the host at the vetted address: answers each request 200 and closes the
    connection, so every delivery opens a new one (and may resolve again)."""

    def __init__(self) -> None:
        self.requests = 0
        self.address: tuple[str, int] = ("", 0)

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            self.requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_StandIn]:
        server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.address = ("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


def _secure_client() -> DeliveryClient:
    settings = Settings.from_env({"HOOKSTREAM_DELIVERY_TIMEOUT": "5"})
    assert not settings.allow_insecure_targets  # the rules under test are on
    return DeliveryClient(settings)


async def _post(client: DeliveryClient, url: str) -> str:
    """`200`, or the error the delivery failed with."""
    try:
        status, _, _ = await client.post(url, b"{}", {"Content-Type": "application/json"},
                                         keep=10)
    except (aiohttp.ClientError, httpx.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return str(status)


def _refused(outcome: str) -> bool:
    return any(refusal in outcome for refusal in REFUSALS)


def test_the_fixture_addresses_are_what_they_claim() -> None:
    assert is_public_address(VETTED)
    assert not is_public_address(INSIDE)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[list[str]]], _Dns]:
    def install(answers: list[list[str]]) -> _Dns:
        fake = _Dns(answers)
        monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
        return fake

    return install


def test_a_delivery_connects_to_the_address_it_vetted_not_to_a_later_answer(
        dns: Callable[[list[list[str]]], _Dns]) -> None:
    """First answer public, every later one 127.0.0.1; three deliveries, each on a new
    connection (the stand-in closes them): each goes to the vetted address or is refused."""
    fake = dns([[VETTED], [INSIDE]])

    async def main(net: _Net) -> tuple[list[str], int, int]:
        async with _Inside().running() as inside, _StandIn().running() as stand_in:
            net.vetted_to = stand_in.address
            url = f"http://{NAME}:{inside.port}/hook"
            client = _secure_client()
            try:
                outcomes = [await _post(client, url) for _ in range(3)]
            finally:
                await client.aclose()
            return outcomes, inside.connections, stand_in.requests

    outcomes, inside_connections, answered = _run(main)
    print(f"\noutcomes {outcomes}; {fake.lookups} lookup(s) of {NAME}")
    assert fake.lookups >= 1  # the name was resolved, through the fake
    assert inside_connections == 0, outcomes
    assert all(outcome == "200" or _refused(outcome) for outcome in outcomes), outcomes
    assert outcomes[0] == "200"  # the first answer was public: that one is delivered
    assert answered == outcomes.count("200")


def test_every_socket_goes_to_the_vetted_address(
        dns: Callable[[list[list[str]]], _Dns]) -> None:
    """The same rebinding name, seen at the socket: the only address ever connected to is
    the public one the first lookup gave (on the URL's port)."""
    dns([[VETTED], [INSIDE]])

    async def main(net: _Net) -> tuple[list[tuple[str, int]], int, list[str]]:
        async with _Inside().running() as inside, _StandIn().running() as stand_in:
            net.vetted_to = stand_in.address
            client = _secure_client()
            try:
                outcomes = [await _post(client, f"http://{NAME}:{inside.port}/hook")
                            for _ in range(3)]
            finally:
                await client.aclose()
            return net.connects, inside.port, outcomes

    connects, port, outcomes = _run(main)
    assert connects, outcomes  # at least the first delivery connected
    assert set(connects) == {(VETTED, port)}, (connects, outcomes)


def test_a_name_vetted_at_creation_that_rebinds_before_delivery_is_refused(
        dns: Callable[[list[list[str]]], _Dns]) -> None:
    """The API's check (resolves_publicly) takes the public first answer; by the delivery
    the name answers 127.0.0.1: the delivery fails as unsafe, and nothing connects inside."""
    fake = dns([[VETTED], [INSIDE]])

    async def main(net: _Net) -> tuple[bool, str, int, list[tuple[str, int]]]:
        async with _Inside().running() as inside, _StandIn().running() as stand_in:
            net.vetted_to = stand_in.address
            vetted = await resolves_publicly(NAME)
            client = _secure_client()
            try:
                outcome = await _post(client, f"http://{NAME}:{inside.port}/hook")
            finally:
                await client.aclose()
            return vetted, outcome, inside.connections, net.connects

    vetted, outcome, inside_connections, connects = _run(main)
    assert vetted  # the API would have stored the URL
    assert fake.lookups >= 2  # the delivery resolved for itself
    assert _refused(outcome), outcome
    assert inside_connections == 0
    assert all(host != INSIDE for host, _ in connects), connects


def test_a_private_address_among_public_ones_is_never_tried(
        dns: Callable[[list[list[str]]], _Dns]) -> None:
    """One answer holding both (public first): when the public address refuses the
    connection, the client gives up rather than falling through to 127.0.0.1."""
    dns([[VETTED, INSIDE]])

    async def main(net: _Net) -> tuple[str, int, list[tuple[str, int]]]:
        async with _Inside().running() as inside:
            net.vetted_to = None  # the public host is down
            client = _secure_client()
            try:
                outcome = await _post(client, f"http://{NAME}:{inside.port}/hook")
            finally:
                await client.aclose()
            return outcome, inside.connections, net.connects

    outcome, inside_connections, connects = _run(main)
    assert outcome != "200", outcome
    assert inside_connections == 0, outcome
    assert connects and all(host == VETTED for host, _ in connects), connects


def test_the_control_without_the_rules_the_rebinding_answer_is_reached(
        dns: Callable[[list[list[str]]], _Dns]) -> None:
    """The same setup with insecure targets allowed (the rules off): the mixed answer's
    127.0.0.1 is reached. Shows that the network above can catch what the tests forbid."""
    dns([[VETTED, INSIDE]])

    async def main(net: _Net) -> tuple[int, list[tuple[str, int]]]:
        async with _Inside().running() as inside:
            net.vetted_to = None
            client = DeliveryClient(Settings.from_env({
                "HOOKSTREAM_ALLOW_INSECURE_TARGETS": "1", "HOOKSTREAM_DELIVERY_TIMEOUT": "5"}))
            try:
                await _post(client, f"http://{NAME}:{inside.port}/hook")
            finally:
                await client.aclose()
            return inside.connections, net.connects

    inside_connections, connects = _run(main)
    assert inside_connections == 1
    assert [host for host, _ in connects] == [VETTED, INSIDE]


