"""Avro's binary encoding of longs, strings and nullable ones, for the hot records whose
bytes we put together ourselves (streams.delivery.models). Pure.

Why by hand: fastavro's `schemaless_writer` walks the parsed schema again on every call
(its named types), which is most of the 11 us an attempt record took, against about
3 us here; a delivery writes one. What is written must equal fastavro's bytes for every
value: tests/unit/test_avrobinary.py compares the two on generated records. A value these
functions do not take (not exactly an int or a str, a number beyond its type's range, text
that is not UTF-8) raises TypeError, ValueError or OverflowError, and the caller leaves it
to fastavro, which encodes it or refuses it as it would have anyway.
"""

from __future__ import annotations

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
#: The encodings of small numbers, which most ints of a record are (attempts, status
#: codes, milliseconds, string lengths): built once.
_SMALL = 2048
_SMALL_LONGS: list[bytes] = []
#: A nullable field's branch: index 0 (null) or 1 (the value), as zigzag varints.
NULL, PRESENT = b"\x00", b"\x02"


def long(value: int) -> bytes:
    """An Avro long: zigzag, then a base-128 varint. Only an int (not a bool) within 64
    bits: anything else is fastavro's to judge."""
    return _integer(value, _LONG_MIN, _LONG_MAX)


def int32(value: int) -> bytes:
    """An Avro int: a long's encoding, of an int within 32 bits."""
    return _integer(value, _INT_MIN, _INT_MAX)


def string(text: str) -> bytes:
    """An Avro string: the UTF-8 bytes' length as a long, then the bytes."""
    if type(text) is not str:
        raise TypeError(f"not a str: {type(text).__name__}")
    data = text.encode()
    return long(len(data)) + data


def optional_int32(value: int | None) -> bytes:
    """["null", "int"]."""
    return NULL if value is None else PRESENT + int32(value)


def optional_long(value: int | None) -> bytes:
    """["null", "long"]."""
    return NULL if value is None else PRESENT + long(value)


def optional_string(text: str | None) -> bytes:
    """["null", "string"]."""
    return NULL if text is None else PRESENT + string(text)


def _integer(value: int, lowest: int, highest: int) -> bytes:
    if type(value) is not int:
        raise TypeError(f"not an int: {type(value).__name__}")
    if 0 <= value < _SMALL:
        return _SMALL_LONGS[value]
    if not lowest <= value <= highest:
        raise OverflowError(f"{value} is out of range")
    return _varint((value << 1) ^ (value >> 63))


def _varint(zigzag: int) -> bytes:
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_SMALL_LONGS.extend(_varint(n << 1) for n in range(_SMALL))
