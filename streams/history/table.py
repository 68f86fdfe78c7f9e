"""Each webhook's recent delivery history: its last 1,000 attempts, newest first.

A faust table filled from hookstream.delivery-log (keyed by webhook id) by
streams.history.feeder, and partitioned like it.
Every attempt writes one small entry, never the whole history:
    <webhook>\\0<seq % 1000>  -> seq (8 bytes, big-endian) + the attempt record (Avro)
so each webhook is a ring of 1,000 slots, and the compacted changelog
(hookstream.delivery-history) holds at most 1,000 records per webhook.

The slots are written to the changelog by a librdkafka producer of our own, a batch of
attempts at a time, and put in the table's store directly; faust's own path (a changelog
send per `table[key] = value` through its aiokafka producer) cost about a quarter of a
loaded worker's CPU (py-spy during `make bench` (a)). What faust reads back on recovery is
the same: raw key and value, on the partition of the attempt record (faust's rule). A
batch's offsets are committed only once all its slots landed, so a crash loses no slot.
The newest seq is kept in memory; after a restart or rebalance it is found again by reading
the webhook's slots once. (Before, a `<webhook>\\0head` entry was written on every attempt
too: half of the history's cost. Slots and heads written that way are still read.)

The table lives on the worker that owns the webhook's partition; web views reach it with
streams.api.context.Api.forwarded, which forwards a request to that worker (without the
caller's key);
the views themselves are the API's (streams/api/deliveries.py).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from faust.types import TableT

from ..delivery.models import SUCCESS, AttemptRecord
from ..kafka.app import raw_table
from ..kafka.topics import DELIVERY_HISTORY, max_message_bytes
from ..pipeline.clients import Producer
from ..pipeline.landing import RecordTooLarge, until_landed
from ..pipeline.records import record_size
from ..runtime.context import Runtime

log = logging.getLogger(__name__)

KEPT = 1000
_SEQ = struct.Struct(">Q")
#: Avro single-object encoding's marker: a slot written before seqs were stored.
_LEGACY = b"\xc3\x01"


def _legacy_head(webhook_id: str) -> bytes:
    return f"{webhook_id}\x00head".encode()


def _slot(webhook_id: str, seq: int) -> bytes:
    return f"{webhook_id}\x00{seq % KEPT}".encode()


def _unpack(stored: bytes) -> tuple[int | None, bytes]:
    """(seq, attempt record) of a slot; seq is None for a slot written before seqs."""
    if stored[:2] == _LEGACY:
        return None, stored
    return _SEQ.unpack_from(stored)[0], stored[_SEQ.size:]


@dataclass(frozen=True)
class Page:
    records: list[AttemptRecord]
    #: Pass back as `cursor` for the next (older) page; None at the end.
    next_cursor: int | None


class Attempt(NamedTuple):
    """An attempt record to keep, as read from the delivery log."""

    #: Its webhook: whose ring of slots it goes in.
    webhook_id: str
    #: Its bytes as logged: what the slot keeps.
    value: bytes
    #: Its partition of the log, which is its slot's partition of the changelog.
    partition: int


class History:
    """The history table; streams.history.feeder fills it."""

    def __init__(self, rt: Runtime) -> None:
        self.table: TableT[Any, Any] = raw_table(rt.app, rt.settings, "delivery-history",
                                                 changelog=DELIVERY_HISTORY)
        #: Newest seq per webhook, for the partitions this worker holds (forgotten on
        #: rebalance).
        self._newest: dict[str, int] = {}
        self._changelog = rt.settings.topic(DELIVERY_HISTORY)
        self._app = rt.app
        #: Partitions whose history is complete here: recovered by faust and filled by the
        #: feeder, which keeps this set as the delivery-log partitions it reads.
        self.serving: frozenset[int] = frozenset()
        rt.app.on_partitions_revoked.connect(self._forget_newest)

    def serves(self, webhook_id: str) -> bool:
        """Whether this worker's history of the webhook is complete. Not while faust reads
        a partition it has just taken over back from the changelog (a rebalance): a page
        read then would be empty or short, which looks like attempts that never were."""
        key = self.table.changelog_topic.prepare_key(webhook_id, None)[0]
        tp = self._app.producer.key_partition(self._changelog, key)
        return tp.partition in self.serving

    async def _forget_newest(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        # Partitions may come back after another worker wrote to them: read the slots again.
        self._newest.clear()

    async def record(self, attempts: list[Attempt], producer: Producer) -> None:
        """Each attempt in its webhook's next slot, through `producer` to the changelog;
        returns once every slot landed."""
        # Seqs are taken here and kept only once every slot landed: a batch tried again
        # (or record by record, HistoryFeeder) writes the same slots, not new ones that
        # would push real attempts out of the ring.
        newest: dict[str, int] = {}
        slots: dict[bytes, tuple[bytes, int]] = {}
        for webhook, value, partition in attempts:
            seq = (newest[webhook] if webhook in newest else self.newest_seq(webhook)) + 1
            newest[webhook] = seq
            slots[_slot(webhook, seq)] = (_SEQ.pack(seq) + value, partition)
        limit = max_message_bytes(DELIVERY_HISTORY)
        for key, (value, _) in slots.items():
            # Refused by the broker on every try (a forged record near the log's limit): the
            # feeder quarantines it rather than waiting for ever.
            if record_size(key, value, []) > limit:
                raise RecordTooLarge(f"a history slot of {len(value)} bytes, over the "
                                     f"changelog's limit of {limit}")
        # All handed to the producer at once, then awaited in turn (no task per slot).
        sends = [(key, value, partition, producer.send(
                     self._changelog, value=value, key=key, partition=partition))
                 for key, (value, partition) in slots.items()]
        for key, value, partition, sending in sends:
            resend = partial(producer.send, self._changelog, value=value, key=key,
                             partition=partition)
            await until_landed(sending, resend, "the delivery history")
        for key, (value, _) in slots.items():
            self.table.data[key] = value
        self._newest.update(newest)

    def _stored(self, key: bytes) -> bytes | None:
        """A slot as the store holds it: read where `record` writes, without faust's
        Table.get around it (sensors, `__missing__`), which made the 1,000 reads of
        `newest_seq` cost 1.23 ms a webhook against 0.44 (timeit): paid by every webhook's
        first attempt after a rebalance, on the deliveries' event loop."""
        stored: bytes | None = self.table.data.get(key)
        return stored

    def newest_seq(self, webhook_id: str) -> int:
        seq = self._newest.get(webhook_id)
        if seq is None:
            seq = int(self._stored(_legacy_head(webhook_id)) or b"0")
            for slot in range(KEPT):
                stored = self._stored(_slot(webhook_id, slot))
                if stored is not None:
                    seq = max(seq, _unpack(stored)[0] or 0)
            self._newest[webhook_id] = seq
        return seq

    def page(self, webhook_id: str, *, status: str | None = None, limit: int = 50,
             cursor: int | None = None) -> Page:
        """Newest-first attempts of one webhook (this worker must own it: see
        Api.forwarded in streams.api.context)."""
        newest = self.newest_seq(webhook_id)
        oldest = max(1, newest - KEPT + 1)
        seq = newest if cursor is None else min(cursor - 1, newest)
        found: list[AttemptRecord] = []
        while seq >= oldest and len(found) < limit:
            stored = self._stored(_slot(webhook_id, seq))
            expected, seq = seq, seq - 1
            if stored is None:
                continue
            stored_seq, value = _unpack(stored)
            if stored_seq not in (None, expected):
                continue  # an older lap of the ring, left by a crash before it was overwritten
            record = AttemptRecord.decode(value)
            if status is None or record.status == status:
                found.append(record)
        return Page(found, seq + 1 if seq >= oldest else None)

    def summary(self, webhook_id: str, window: int = 100) -> dict[str, object]:
        """Last success, last failure and failures among the last `window` attempts."""
        last_success = last_failure = None
        failures = 0
        for record in self.page(webhook_id, limit=window).records:
            if record.status == SUCCESS:
                last_success = last_success or record.attempted_at
            else:
                failures += 1
                last_failure = last_failure or record.attempted_at
        return {"last_success_at": last_success, "last_failure_at": last_failure,
                "recent_failures": failures}
