"""Where the history's feeder starts reading a partition of the delivery log: this group's
offset; for a partition it has none for, where faust's group had got to (it read the log
for the history before streams.history.feeder, and an upgraded deployment has not recorded
what lies before that); else the log's beginning.

Each answer must hold every partition asked for: aiokafka does not read an OffsetFetch
response's group-level error (a coordinator still loading after a broker restart answers
with no partitions at all), and taking "no offset" for an answer would record a partition's
attempts a second time. So a missing partition is an error, and the caller asks again.

Delete with LEGACY_GROUP once no deployment older than the feeder remains.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..kafka.app import APP_ID

#: The consumer group whose offsets said how far the history had got before the feeder.
LEGACY_GROUP = APP_ID


class OffsetsUnknown(Exception):
    """A group's offsets came back incomplete: ask again."""


class _Beginnings(Protocol):
    def beginning_offsets(
        self, partitions: list[TopicPartition]) -> Awaitable[Mapping[TopicPartition, int]]: ...


async def start_offsets(consumer: _Beginnings, admin: AIOKafkaAdminClient, group: str,
                        legacy_group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Per partition, the offset to read from (see the module docstring); raises
    OffsetsUnknown or KafkaError when that cannot be told yet."""
    own = await _committed(admin, group, tps)
    fresh = [tp for tp in tps if own[tp] < 0]
    legacy = await _committed(admin, legacy_group, fresh) if fresh else {}
    first = await consumer.beginning_offsets([tp for tp in fresh if legacy[tp] < 0])
    return {tp: own[tp] if own[tp] >= 0 else legacy[tp] if legacy[tp] >= 0 else first[tp]
            for tp in tps}


async def _committed(admin: AIOKafkaAdminClient, group: str,
                     tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's committed offset in `group`, -1 for none."""
    found = await admin.list_consumer_group_offsets(group, partitions=tps)
    missing = [tp for tp in tps if tp not in found]
    if missing:
        raise OffsetsUnknown(f"group {group} answered without {missing}")
    return {tp: found[tp].offset for tp in tps}
