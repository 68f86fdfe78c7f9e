"""streams.delivery.stage.hold_until: how long a job read from a retry topic is held.

Never past the topic's delay after the broker appended it, whatever the job claims."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord

from streams.delivery.stage import hold_until

from ..support.hostile import sample_job

APPENDED = 1_760_437_800_000
DELAY_S = 60.0
CEILING = APPENDED + 60_000
NOW = APPENDED + 1_000


def _record(headers: list[tuple[str, bytes]], value: bytes | None = None,
            timestamp: int = APPENDED) -> ConsumerRecord[bytes, bytes]:
    value = sample_job(due_at=APPENDED + 30_000).encode() if value is None else value
    return ConsumerRecord(topic="p.hookstream.retry.1m", partition=0, offset=7,
                          timestamp=timestamp, timestamp_type=1, key=b"wh_1", value=value,
                          checksum=None, serialized_key_size=4,
                          serialized_value_size=len(value), headers=headers)


def test_an_honest_due_time_is_kept() -> None:
    due = APPENDED + 59_000
    assert hold_until(_record([("hookstream-due-at", str(due).encode())]), DELAY_S,
                      NOW) == due


def test_a_past_due_time_is_kept() -> None:
    assert hold_until(_record([("hookstream-due-at", b"5")]), DELAY_S, NOW) == 5


@pytest.mark.parametrize("due", [CEILING + 1, APPENDED + 10 * 365 * 86_400_000, 10**19])
def test_a_forged_far_due_time_is_cut_to_the_topics_delay(due: int) -> None:
    assert hold_until(_record([("hookstream-due-at", str(due).encode())]), DELAY_S,
                      NOW) == CEILING


@pytest.mark.parametrize("header", [b"", b"soon", b"\xff\xfe", b"-5", b" 12", b"1_000",
                                    b"9" * 21, b"7" * 100_000, "١٢".encode()])
def test_an_unreadable_header_falls_back_to_the_jobs_due_at(header: bytes) -> None:
    assert hold_until(_record([("hookstream-due-at", header)]), DELAY_S,
                      NOW) == APPENDED + 30_000


def test_no_header_falls_back_to_the_jobs_due_at_and_that_is_bounded_too() -> None:
    assert hold_until(_record([]), DELAY_S, NOW) == APPENDED + 30_000
    forged = sample_job(due_at=APPENDED + 10**12).encode()
    assert hold_until(_record([], forged), DELAY_S, NOW) == CEILING


def test_no_due_time_anywhere_means_now() -> None:
    assert hold_until(_record([], sample_job(due_at=None).encode()), DELAY_S, NOW) == NOW
    assert hold_until(_record([("hookstream-due-at", b"x")], b"\x00garbage"), DELAY_S,
                      NOW) == NOW


def test_the_last_of_duplicated_headers_counts() -> None:
    """As Kafka's Headers.lastHeader reads them."""
    headers = [("hookstream-due-at", str(APPENDED + 50_000).encode()),
               ("other", b"\xff"), ("hookstream-due-at", str(APPENDED + 20_000).encode())]
    assert hold_until(_record(headers), DELAY_S, NOW) == APPENDED + 20_000


def test_a_zero_delay_topic_holds_nothing_past_its_append_time() -> None:
    far = str(APPENDED + 10**9).encode()
    assert hold_until(_record([("hookstream-due-at", far)]), 0.0, NOW) == APPENDED
