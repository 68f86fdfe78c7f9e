"""Custom headers a webhook adds to its deliveries, and how they read back masked. Pure.

A tenant sets them (an `Authorization` for its receiver, a routing key for its gateway);
we send them on every attempt. So they are checked once, when stored, against every rule
the delivery client and the receiver's parser apply, and nothing the client would refuse
or silently rewrite ever reaches a topic:
- a name is an RFC 9110 token, kept in the case it was written (HTTP/1.1 sends it so;
  HTTP/2 lowercases, and receivers match case-insensitively anyway); two names differing
  only in case are refused, since one would silently replace the other;
- a value is printable ASCII, spaces and tabs inside it allowed (RFC 9110 field-content).
  No CR, LF, NUL or other controls: they would split the request (header injection).
  No obs-text (bytes 0x80-0xFF) and so no non-ASCII: RFC 9110 says senders must not
  generate it, and httpx encodes header values as ASCII. A value may be empty;
- leading or trailing spaces and tabs are refused, not stripped: the receiver's parser
  strips them (RFC 9112), so the value it reads would not be the one stored, and a secret
  silently altered is worse than a clear 400;
- some names are ours or the transport's, refused whatever their case (RESERVED,
  RESERVED_PREFIXES, each with its reason);
- at most MAX_HEADERS headers and MAX_TOTAL_BYTES of names plus values.

Values are secrets as often as not (tokens, basic auth): sealed at rest, reads show MASK.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from .secretbox import is_sealed

#: Headers per webhook: Svix and Hookdeck allow a similar handful; more is a misuse.
MAX_HEADERS: Final = 20
#: Sum over headers of len(name) + len(value), in bytes (ASCII: one byte a character),
#: without the ": " and CRLF framing. Servers commonly cap a request's whole header block
#: at 8 KiB (nginx's default buffer); ours (signature, ids, user agent) stay well under the
#: other half.
MAX_TOTAL_BYTES: Final = 4096

#: Names we refuse, lower-case, and why.
RESERVED: Final[dict[str, str]] = {
    "host": "set from the webhook's URL",
    "content-length": "set from the body",
    "content-type": "the body is always application/json",
    "content-encoding": "the body is not encoded",
    "transfer-encoding": "set by the HTTP client",
    "user-agent": "identifies hookstream to receivers",
    "expect": "would make the client wait for a 100 Continue",
    # Hop-by-hop (RFC 9110 7.6.1): about one connection, not the request; a proxy on the
    # way acts on them or drops them, and the client manages its own connections.
    "connection": "a hop-by-hop header, managed by the HTTP client",
    "keep-alive": "a hop-by-hop header, managed by the HTTP client",
    "upgrade": "a hop-by-hop header: a delivery never changes protocol",
    "te": "a hop-by-hop header, managed by the HTTP client",
    "trailer": "a hop-by-hop header: deliveries send no trailers",
    "http2-settings": "a hop-by-hop header, managed by the HTTP client",
}
#: Of RESERVED, the names that frame or route the request itself. The delivery client's
#: wire refuses them again whoever passes them: a second one would make two framings or
#: two hosts of one request, which a proxy and the receiver may read differently.
FRAMING: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: Prefixes we refuse, lower-case, and why.
RESERVED_PREFIXES: Final[dict[str, str]] = {
    "x-webhook-": "reserved for hookstream's signature and delivery headers",
    "webhook-": "reserved for Standard Webhooks' signature headers",
    # Read by the proxy that deliveries may leave through (HOOKSTREAM_EGRESS_PROXY): a
    # tenant must not speak to our proxy (Proxy-Authorization) or be told apart by it.
    "proxy-": "read by proxies on the way, not by the receiver",
}

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Visible ASCII, with spaces and tabs only between visible characters.
_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20\x09\x21-\x7e]*[\x21-\x7e])?)?")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: What reads show for every value: values are sealed at rest like secrets, and a read
#: shows none of one, not even its length (Subscription.public).
MASK = "********"
#: What check_stored_headers checks in a sealed value's place: any valid value would do
#: (its 6 bytes count toward MAX_TOTAL_BYTES, as they always have).
_SEALED = "sealed"


class HeaderError(ValueError):
    """Custom headers we refuse: `field` names the header at fault (`_where`), or is
    `headers` for the whole; `reason` says why. The message is both: `headers.X-Foo: ...`.
    Kept apart because a quoted name may itself hold ": " (`headers["X-A: b"]`), so the
    message cannot be split back into them."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def _where(name: str) -> str:
    """`headers.X-Foo` for a token; otherwise the name JSON-quoted, so a hostile name cannot
    put a line break (or anything unprintable) into an error message or a log line."""
    return f"headers.{name}" if TOKEN.fullmatch(name) else f"headers[{json.dumps(name)}]"


def check_custom_headers(obj: Any) -> dict[str, str]:
    """The headers to store and send, as given, or HeaderError (and nothing else) saying which
    is wrong and why."""
    if not isinstance(obj, dict):
        raise HeaderError("headers", "must be an object of header names to string values")
    if len(obj) > MAX_HEADERS:
        raise HeaderError("headers", f"{len(obj)} headers, over the {MAX_HEADERS} limit")
    seen: dict[str, str] = {}
    total = 0
    for name, value in obj.items():
        if not isinstance(name, str):
            raise HeaderError("headers", "names must be strings")
        where = _where(name)
        _check_name(name, where)
        lower = name.lower()
        if lower in seen:
            raise HeaderError(where, f"the same header as {seen[lower]} (names are "
                                     f"case-insensitive)")
        seen[lower] = name
        _check_value(value, where)
        total += len(name) + len(value)
    if total > MAX_TOTAL_BYTES:
        raise HeaderError("headers", f"{total} bytes of names and values, over the "
                                     f"{MAX_TOTAL_BYTES} limit")
    return dict(obj)


def check_stored_headers(obj: Any) -> dict[str, str]:
    """check_custom_headers for headers as they are stored and travel in commands: the API
    seals each value before its command, and a sealed value is judged by its name only.
    Its plaintext was checked where it was sealed; the ciphertext says nothing of it (not
    even its length), so a stand-in is checked in its place. Returns the headers as given,
    sealed values sealed."""
    plain = obj
    if isinstance(obj, dict):
        plain = {name: _SEALED if isinstance(value, str) and is_sealed(value) else value
                 for name, value in obj.items()}
    check_custom_headers(plain)
    return dict(obj)


def _check_name(name: str, where: str) -> None:
    if not TOKEN.fullmatch(name):
        raise HeaderError(where, "not a valid header name (letters, digits and "
                                 "!#$%&'*+-.^_`|~ only)")
    lower = name.lower()
    why = RESERVED.get(lower)
    if why is None:
        why = next((w for p, w in RESERVED_PREFIXES.items() if lower.startswith(p)), None)
    if why is not None:
        raise HeaderError(where, f"reserved ({why})")


def _check_value(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise HeaderError(where, "the value must be a string")
    if _VALUE.fullmatch(value):
        return
    if CONTROL.search(value):
        raise HeaderError(where, "the value holds a control character (CR, LF, NUL, ...)")
    if not value.isascii():
        raise HeaderError(where, "the value must be ASCII")
    raise HeaderError(where, "the value must not begin or end with a space or tab")
