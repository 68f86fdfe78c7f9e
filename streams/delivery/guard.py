"""The duplicate guard: which jobs of a partition already reached an outcome. Pure.

After a crash both stages read again what they had not committed: the fan-out re-produces
jobs whose deliveries already succeeded, and the delivery stage re-reads jobs it already
attempted. Without a guard each would be POSTed again. Every attempt's outcome is on
hookstream.delivery-log, keyed by webhook like the jobs, so outcomes of the jobs of
deliveries partition p (and of each retry topic's partition p) are on log partition p.
A worker that takes partition p reads the last `capacity` outcomes there into a
`SeenOutcomes`, adds each outcome it produces itself, and skips a job whose outcome is
already known (`hookstream_deliveries_skipped_duplicate_total`).

What identifies a job is (delivery id, job instance, attempt): the delivery id is the same
for every copy of an (event, webhook); `created_at`, the instance, is the domain record's
timestamp for a fanned-out job (the same when the fan-out makes it again) and the replay's
time for a replayed one, so an operator's replay is never taken for a duplicate. A job is
done if its instance has an outcome at its attempt or a later one (a retry of it is on
its way, or it succeeded, or it is dead).

Bounded: the newest `capacity` instances per partition, about 100 bytes each (an int key
in a dict and a deque). A duplicate of a job whose outcome is older than that falls back to
at-least-once: it is attempted again, with its delivery id.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque

#: Headers every delivery-log record carries, so a worker can read outcomes without
#: decoding them (streams.delivery.routing writes them).
DELIVERY_ID_HEADER = "hookstream-delivery-id"
JOB_CREATED_HEADER = "hookstream-job-created"
ATTEMPT_HEADER = "hookstream-attempt"
_OUR_ID = re.compile(r"dlv_[0-9a-f]{24}")


def instance_key(delivery_id: str, created_at: int) -> int:
    """One number per job instance, and a different one for every other: a collision would
    skip a delivery. Our ids are `dlv_` and 96 bits of hex (models.delivery_id_for), so the
    id and the time are packed side by side, exactly (about 1.4 µs); any other id is hashed
    (blake2b, 128 bits, about 6 µs), into numbers the packed ones never take."""
    if _OUR_ID.fullmatch(delivery_id):
        return int(delivery_id[4:], 16) | (created_at << 96)
    digest = hashlib.blake2b(f"{delivery_id}\x00{created_at}".encode(), digest_size=16)
    return -1 - int.from_bytes(digest.digest(), "big")  # negative: never a packed key


def outcome_headers(delivery_id: str, created_at: int, attempt: int) -> tuple[
        tuple[str, bytes], ...]:
    return ((DELIVERY_ID_HEADER, delivery_id.encode()),
            (JOB_CREATED_HEADER, str(created_at).encode()),
            (ATTEMPT_HEADER, str(attempt).encode()))


def outcome_of(headers: object) -> tuple[int, int] | None:
    """(instance key, attempt) of a delivery-log record, from its headers; None for a
    record without them (written before the guard) or with nonsense in them."""
    if not isinstance(headers, (list, tuple)):
        return None
    found: dict[str, bytes] = {}
    for header in headers:
        if isinstance(header, tuple) and len(header) == 2 and isinstance(header[1], bytes):
            found[header[0]] = header[1]
    try:
        delivery_id = found[DELIVERY_ID_HEADER].decode()
        created_at = int(found[JOB_CREATED_HEADER])
        attempt = int(found[ATTEMPT_HEADER])
    except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return instance_key(delivery_id, created_at), attempt


class SeenOutcomes:
    """The highest attempt with an outcome, per job instance, for the newest `capacity`
    instances (by when each was first seen)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._attempts: dict[int, int] = {}
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._attempts)

    def add(self, key: int, attempt: int) -> None:
        if self.capacity <= 0:
            return
        known = self._attempts.get(key)
        if known is None:
            self._attempts[key] = attempt
            self._order.append(key)
            if len(self._order) > self.capacity:
                del self._attempts[self._order.popleft()]
        elif attempt > known:
            self._attempts[key] = attempt

    def done(self, key: int, attempt: int) -> bool:
        """Whether this instance already has an outcome at `attempt` or a later one."""
        return self._attempts.get(key, 0) >= attempt
