"""Retry-After: the three HTTP-date forms and delta-seconds read back what was written;
anything else is None, never an exception; waits are never negative, grow with the header,
and stay within the ladder's cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streams.core.retryafter import MAX_RETRY_AFTER, parse_retry_after, retry_delay

FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True)

LADDER = (60.0, 300.0, 1800.0)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Epoch seconds from 1971 to 2100: what a server's clock and ours can plausibly say.
NOW = st.integers(365 * 86400, 4102444800).map(float)
MOMENT = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.just(UTC))


def imf(t: datetime) -> str:
    return formatdate(t.timestamp(), usegmt=True)


def rfc850(t: datetime) -> str:
    return (f"{DAYS[t.weekday()]}, {t.day:02d}-{MONTHS[t.month - 1]}-{t.year % 100:02d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT")


def asctime(t: datetime) -> str:
    return (f"{DAYS[t.weekday()][:3]} {MONTHS[t.month - 1]} {t.day:2d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} {t.year}")


def expected(moment: datetime, now: float) -> float:
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER)


NOW_1994 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    ("0", 0.0),
    (" 120\t", 120.0),                                    # optional whitespace around
    ("007", 7.0),
    ("2147483648", MAX_RETRY_AFTER),
    ("99999999999", MAX_RETRY_AFTER),
    ("9" * 5000, MAX_RETRY_AFTER),                        # no int() of 5,000 digits
    ("1.5", None), ("-1", None), ("+1", None), ("1e3", None), ("", None), ("١٢", None),
    ("Sun, 06 Nov 1994 08:51:37 GMT", 120.0),             # IMF-fixdate
    ("Sunday, 06-Nov-94 08:51:37 GMT", 120.0),            # RFC 850
    ("Sun Nov  6 08:51:37 1994", 120.0),                  # asctime
    ("Sun, 06 Nov 1994 08:48:37 GMT", 0.0),               # in the past
    ("Sun, 31 Feb 1994 08:49:37 GMT", None),              # no such day
    ("Sun, 06 Nov 1994 25:49:37 GMT", None),
    ("soon", None),
])
def test_values(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW_1994) == expected


@FAST
@given(st.text() | st.text("0123456789 ,:-+.GMTSunNov", max_size=40), NOW)
def test_never_raises_never_negative(value: str, now: float) -> None:
    wait = parse_retry_after(value, now)
    assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER


@FAST
@given(st.integers(0, 10**12), st.integers(0, 10**12), NOW)
def test_monotonic_in_delta_seconds(a: int, b: int, now: float) -> None:
    low, high = sorted((a, b))
    wait_low, wait_high = parse_retry_after(str(low), now), parse_retry_after(str(high), now)
    assert wait_low is not None and wait_high is not None
    assert wait_low <= wait_high
    assert wait_low == min(low, MAX_RETRY_AFTER)


@FAST
@given(MOMENT, NOW, st.sampled_from([imf, asctime]))
def test_dates_read_back(moment: datetime, now: float, form: object) -> None:
    assert callable(form)
    moment = moment.replace(microsecond=0)
    wait = parse_retry_after(form(moment), now)
    assert wait == expected(moment, now)


@FAST
@given(NOW, st.integers(-49 * 365, 49 * 365), st.integers(0, 86399))
def test_rfc850_two_digit_years_are_within_fifty_years(now: float, days: int,
                                                       seconds: int) -> None:
    moment = (datetime.fromtimestamp(now, UTC).replace(microsecond=0)
              + timedelta(days=days, seconds=seconds))
    assume(moment.year >= 1971)
    assert parse_retry_after(rfc850(moment), now) == expected(moment, now)


@FAST
@given(MOMENT, MOMENT, NOW)
def test_monotonic_in_dates(a: datetime, b: datetime, now: float) -> None:
    early, late = sorted((a, b))
    wait_early, wait_late = parse_retry_after(imf(early), now), parse_retry_after(imf(late), now)
    assert wait_early is not None and wait_late is not None
    assert wait_early <= wait_late


def test_retry_delay_by_example() -> None:
    assert [retry_delay(LADDER, i, None) for i in range(3)] == list(LADDER)
    assert retry_delay(LADDER, 0, 1.0) == 60.0            # never sooner than the ladder
    assert retry_delay(LADDER, 0, 200.0) == 200.0         # as asked, within the cap
    assert retry_delay(LADDER, 0, 86400.0) == 360.0       # capped: 60 + 300
    assert retry_delay(LADDER, 1, 86400.0) == 2100.0      # 300 + 1800
    assert retry_delay(LADDER, 2, 86400.0) == 3600.0      # last rung: 1800 + 1800
    assert retry_delay(LADDER, 2, float("nan")) == 1800.0
    assert retry_delay(LADDER, 1, float("inf")) == 2100.0
    with pytest.raises(ValueError, match="rung 3"):
        retry_delay(LADDER, 3, None)
    with pytest.raises(ValueError, match="rung -1"):
        retry_delay(LADDER, -1, None)


LADDERS = st.lists(st.floats(0, 1e6), min_size=1, max_size=5).map(tuple)
HEADER = st.none() | st.floats(0, 2 * MAX_RETRY_AFTER)


@FAST
@given(LADDERS, st.data(), HEADER, HEADER)
def test_retry_delay_is_capped_and_monotonic(ladder: tuple[float, ...], data: st.DataObject,
                                             a: float | None, b: float | None) -> None:
    rung = data.draw(st.integers(0, len(ladder) - 1))
    delay = ladder[rung]
    following = ladder[rung + 1] if rung + 1 < len(ladder) else ladder[-1]
    wait_a = retry_delay(ladder, rung, a)
    assert delay <= wait_a <= delay + following
    if a is None:
        assert wait_a == delay
    elif delay <= a <= delay + following:
        assert wait_a == a                                # honoured exactly inside the cap
    if a is not None and b is not None and a <= b:
        assert wait_a <= retry_delay(ladder, rung, b)


@FAST
@given(st.text(), NOW, st.integers(0, 2))
def test_the_pipeline_of_both_never_raises(value: str, now: float, rung: int) -> None:
    wait = retry_delay(LADDER, rung, parse_retry_after(value, now))
    assert LADDER[rung] <= wait <= LADDER[rung] + LADDER[min(rung + 1, 2)]
