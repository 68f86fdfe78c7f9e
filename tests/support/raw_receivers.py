"""Raw HTTP/1.1 receivers on loopback that answer with scripted bytes, and a self-signed
certificate for TLS ones: for tests of the deliveries' connections (test_wire) and of the
egress proxy path (test_egress_proxy). Nothing here knows hookstream."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: (the request's number, from 0, over all connections; its bytes) -> bytes to send
#: back, or None to close the connection without answering.
Script = Callable[[int, bytes], Awaitable[bytes | None]]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedReceiver:
    """A raw HTTP/1.1 server: reads each request whole (by Content-Length), answers what
    the script says, and closes after the first answer if `closes`. Counts connections
    and requests."""

    def __init__(self, script: Script, closes: bool = False) -> None:
        self._script = script
        self._closes = closes
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self._script(len(self.requests) - 1, request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self._closes:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self, tls: ssl.SSLContext | None = None) -> AsyncIterator[ScriptedReceiver]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
        try:
            yield self
        finally:
            server.close()


def always(answer: bytes | None) -> Script:
    async def script(n: int, request: bytes) -> bytes | None:
        return answer
    return script


class SelfSignedTLS(NamedTuple):
    """TLS for a loopback receiver whose certificate no public store trusts."""

    #: The receiver's side: the certificate for 127.0.0.1 and its key.
    server: ssl.SSLContext
    #: A client's side that trusts that certificate, and only it.
    trusting: ssl.SSLContext


def self_signed(directory: Path) -> SelfSignedTLS:
    """A fresh certificate for 127.0.0.1 (written to `directory`), on both sides."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookstream test receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return SelfSignedTLS(server, ssl.create_default_context(cafile=str(cert_path)))
