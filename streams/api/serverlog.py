"""Requests the web server cannot parse, logged as the client's mistake they are.

aiohttp logs each one (a request line over 8 KB, a control character in a header, a body
shorter than its Content-Length) as an error with its traceback: a dozen lines that say
nothing about us, and a way for anyone who can reach the port to fill the log. This filter
turns them into one warning line with aiohttp's reason, without the excerpt of the request
aiohttp quotes (a header line can be `Authorization: Bearer <key>`); the client still gets
aiohttp's 400.
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

#: aiohttp's logger for errors of the server's connections.
SERVER_LOGGER = "aiohttp.server"
#: Characters of aiohttp's reason kept.
REASON_CHARS = 200
#: Where aiohttp's reason starts quoting the request: `...: b'<bytes>'` (or `: '<text>'`).
_EXCERPT = re.compile(r":\s*b?['\"]")


class ClientErrorsInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            # An unreadable URL's reason is the URL itself, which may carry a key.
            reason = "" if isinstance(exc, InvalidURLError) else repr(
                _EXCERPT.split(str(exc.message).split("\n", 1)[0], 1)[0])
            if len(reason) > REASON_CHARS:
                reason = reason[:REASON_CHARS] + "…"
            record.msg = f"{record.getMessage()}: bad request ({type(exc).__name__}): {reason}"
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def install() -> None:
    """On aiohttp's server logger, once (the API installs it with its views)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ClientErrorsInOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsInOneLine())
