"""Retry-After: how long a receiver asks us to wait, and the wait we then choose. Pure.

`parse_retry_after` reads the header (RFC 9110 10.2.3) as
- delta-seconds: ASCII digits only. A sign, a decimal point or anything else is not the
  grammar and reads as no header (None), as does an empty value: a wrong guess could
  retry far sooner or later than meant, and the ladder's own delay is always safe.
  Huge values are clamped to MAX_RETRY_AFTER, 2**31 s, the value RFC 9111 1.2.2 tells
  caches to treat any larger delta as (about 68 years), so no value overflows a float.
- an HTTP-date, in any of the three forms recipients must accept: IMF-fixdate
  (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
  asctime (`Sun Nov  6 08:49:37 1994`). email.utils reads them; it is a little lenient
  (a numeric zone, missing seconds), as most HTTP clients are. RFC 850's two-digit year
  is read by RFC 9110 5.6.7's rule (more than 50 years ahead means the century before),
  not email.utils' fixed pivot. A date in the past is 0 s; an impossible date is None.

`retry_delay` is the issue's rule, "a 429 or 503 with Retry-After is retried no sooner than
it says, capped at the next rung's delay plus one rung". Rungs are numbered as in
streams.delivery.routing: the retry about to be scheduled after failed attempt n is rung
i = n - 1, whose ladder delay is d_i (60, 300, 1800 s by default). The wait is

    max(d_i, min(retry_after, d_i + d_next)),   d_next = d_{i+1}, or d_i on the last rung

- Retry-After only lengthens a wait, never shortens it: a receiver that says "1" while it
  fails is not hammered faster than the ladder (what Svix does too);
- it is honoured up to d_i + d_next: the wait this retry would have had, plus the next
  one. With the default ladder: at most 6 min for the first retry, 35 min for the second,
  60 min for the last. A receiver asking for a day does not park a job for a day; it
  gets its retries, spaced as far as the ladder allows;
- no header (None), or a NaN, is d_i: the ladder as it is today.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_tz
from typing import Final

#: RFC 9111 1.2.2: a delta larger than 2**31 is treated as 2**31.
MAX_RETRY_AFTER: Final = float(2**31)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
#: RFC 850's date, `Sunday, 06-Nov-94 ...`: the one form with a two-digit year.
_RFC850_YEAR = re.compile(r"[A-Za-z]+,\s*[0-9]{1,2}-[A-Za-z]{3}-([0-9]{2})\s", re.ASCII)


def parse_retry_after(value: str, now_s: float) -> float | None:
    """Seconds to wait from `now_s` (epoch seconds) by a Retry-After value; 0 for a date in
    the past; None if it is neither delta-seconds nor an HTTP-date. Never raises."""
    text = value.strip(" \t")
    if _DIGITS.fullmatch(text):
        digits = text.lstrip("0") or "0"
        if len(digits) > 10:  # past 2**31 whatever the digits; int() of thousands refuses
            return MAX_RETRY_AFTER
        return min(float(int(digits)), MAX_RETRY_AFTER)
    at = _http_date(text, now_s)
    if at is None:
        return None
    wait = at - now_s
    if math.isnan(wait):
        return None
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def _http_date(text: str, now_s: float) -> float | None:
    """Epoch seconds of an HTTP-date, or None."""
    if len(text) > 64:  # the longest HTTP-date (RFC 850, Wednesday) is 38 characters
        return None
    try:
        parts = parsedate_tz(text)
    except (ValueError, IndexError, TypeError):  # not documented, but seen in old versions
        return None
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    two_digits = _RFC850_YEAR.match(text)
    if two_digits is not None:
        year = _rfc850_year(int(two_digits.group(1)), now_s)
    try:
        # datetime checks the ranges (31 February, hour 99); timegm then cannot fail.
        # A leap second (:60, which RFC 5322 allows) is read as :59.
        moment = datetime(year, month, day, hour, minute, min(second, 59))
    except (ValueError, OverflowError):
        return None
    return float(calendar.timegm(moment.timetuple()) - (parts[9] or 0))


def _rfc850_year(yy: int, now_s: float) -> int:
    """RFC 9110 5.6.7: the latest year ending in `yy` not more than 50 years ahead of now."""
    try:
        this_year = datetime.fromtimestamp(now_s, UTC).year
    except (ValueError, OverflowError, OSError):
        this_year = 2000
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        return year - 100
    return year + 100 if year + 100 <= this_year + 50 else year


def retry_delay(ladder: tuple[float, ...], rung: int, retry_after: float | None) -> float:
    """Seconds before the retry at `rung` (0-based, routing's retry topic index), given the
    receiver's Retry-After in seconds (None without one). See the module docstring."""
    if not 0 <= rung < len(ladder):
        raise ValueError(f"rung {rung} is not on a ladder of {len(ladder)}")
    delay = ladder[rung]
    if retry_after is None or math.isnan(retry_after):
        return delay
    following = ladder[rung + 1] if rung + 1 < len(ladder) else delay
    return max(delay, min(retry_after, delay + following))
