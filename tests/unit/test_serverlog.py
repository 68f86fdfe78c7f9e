"""streams.api.serverlog: a request the server cannot parse is one warning line."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp.http_exceptions import BadHttpMessage, InvalidURLError, LineTooLong

from streams.api.serverlog import REASON_CHARS, ClientErrorsInOneLine
from streams.telemetry.logs import JsonFormatter


def _logged(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                             "Error handling request from %s", ("10.0.0.1",), info)


@pytest.mark.parametrize("exc", [
    LineTooLong("x" * 10_000, "8190"), BadHttpMessage("Invalid header value char \x01"),
    BadHttpMessage("é\udce9" * 500),
    # As aiohttp's parser words it: the header line quoted, a key in it.
    BadHttpMessage("Invalid header value char:\n\n    b'Authorization: Bearer "
                   "hsk_abc123_TOPSECRETVALUE\\x01'\n ^"),
    LineTooLong(b"GET /?key=hsk_abc123_TOPSECRETVALUE" + b"x" * 9000, "8190"),
    InvalidURLError("/v1/x?api_key=hsk_abc123_TOPSECRETVALUE\x01xxxx")])  # the URL, bare
def test_a_client_error_is_one_warning_line(exc: Exception) -> None:
    record = _logged(exc)
    assert ClientErrorsInOneLine().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    line = JsonFormatter().format(record)
    assert "\n" not in line and "Traceback" not in line
    message = record.getMessage()
    head = f"Error handling request from 10.0.0.1: bad request ({type(exc).__name__}): "
    assert message.startswith(head)
    assert len(message) <= len(head) + REASON_CHARS + 1
    assert "\x01" not in message and "TOPSECRET" not in message and "xxxx" not in message


def test_our_own_errors_keep_their_traceback() -> None:
    record = _logged(KeyError("a bug of ours"))
    assert ClientErrorsInOneLine().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in JsonFormatter().format(record)
