"""streams.pipeline.stage, pure parts: what a failed handler's record becomes when quarantined."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from streams.kafka.topics import INVALID, INVALID_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
from streams.pipeline.records import (
    TRUNCATED_HEADER,
    Origin,
    encoded_key,
    quarantine_copy,
    record_size,
)
from streams.pipeline.stage import HANDLER_ATTEMPTS, HANDLER_BACKOFF_S, handler_failure

ORIGIN = Origin("p.domain.task", 2, 41)


def _headers(record: object) -> dict[str, bytes]:
    return dict(record.headers)  # type: ignore[attr-defined]


def test_handler_failure_names_the_tries_the_kind_and_the_message() -> None:
    reason = handler_failure(3, KeyError("webhook_id"))
    assert reason == "handler failed after 3 attempts: KeyError: 'webhook_id'"


def test_one_pause_between_each_two_tries() -> None:
    assert len(HANDLER_BACKOFF_S) == HANDLER_ATTEMPTS - 1
    assert sum(HANDLER_BACKOFF_S) < 5  # the record, not its partition, waits


def test_copy_keeps_key_value_and_origin() -> None:
    copy = quarantine_copy(ORIGIN, b"ws_1", b"\x00garbage", "invalid event: x",
                           INVALID_MAX_MESSAGE_BYTES)
    assert (copy.topic, encoded_key(copy), copy.value) == (INVALID, b"ws_1", b"\x00garbage")
    assert _headers(copy) == {
        "hookstream-source-topic": b"p.domain.task", "hookstream-source-partition": b"2",
        "hookstream-source-offset": b"41", "hookstream-error": b"invalid event: x"}


@pytest.mark.parametrize("key", [b"\xff\xfe not utf-8", b"\xed\xa0\x80", b"", None])
def test_copy_keeps_a_key_that_is_not_utf8_byte_for_byte(key: bytes | None) -> None:
    copy = quarantine_copy(ORIGIN, key, b"v", "r", INVALID_MAX_MESSAGE_BYTES)
    assert encoded_key(copy) == (key or b"")


def test_a_copy_of_the_biggest_record_a_topic_takes_fits_uncut() -> None:
    value = b"x" * (MAX_MESSAGE_BYTES - 200)
    reason = "handler failed after 3 attempts: " + "e" * 2000  # the header keeps 1000
    copy = quarantine_copy(ORIGIN, b"k" * 100, value, reason, INVALID_MAX_MESSAGE_BYTES)
    assert copy.value == value
    assert TRUNCATED_HEADER not in _headers(copy)


@pytest.mark.parametrize("limit", [1_000_000, 50_000, 2_000])
@pytest.mark.parametrize("key_size", [10, 5_000])
def test_a_copy_over_the_limit_is_cut_to_fit_and_says_how_long_it_was(
        limit: int, key_size: int) -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    key = b"k" * key_size
    copy = quarantine_copy(ORIGIN, key, value, "invalid command: too big", limit)
    size = record_size(encoded_key(copy), copy.value, list(copy.headers))
    assert size <= limit
    assert size > limit - 100  # as much as fits is kept
    assert value.startswith(copy.value)
    headers = _headers(copy)
    assert headers[TRUNCATED_HEADER] == str(len(value)).encode()
    assert headers["hookstream-source-offset"] == b"41"
    assert encoded_key(copy) in (key, b"")


def test_record_size_is_what_aiokafka_checks() -> None:
    headers = [("hookstream-error", b"e" * 100)]
    assert record_size(b"k", b"v" * 1000, headers) == (
        DefaultRecordBatchBuilder.estimate_size_in_bytes(b"k", b"v" * 1000, headers))
