"""Listing and replaying dead letters (confluent-kafka), for the CLI and the API.

A replay re-queues dead letters on hookstream.deliveries as fresh jobs (attempt 1) with
their original delivery ids, so receivers can tell a replay from a new delivery. Each
replayed letter is marked on the compacted hookstream.dlq-replayed topic (key
`<partition>:<offset>`), and a later replay skips marked letters: replaying twice does not
deliver twice. Marks are written after the jobs are acknowledged; a crash between the two
replays those letters again, with the same delivery ids (at-least-once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..core.schemas import SchemaError
from ..core.timeutil import now_ms
from ..delivery.models import DeadLetter
from ..kafka.producer import Publisher
from ..kafka.reader import read_partition, read_topic
from ..kafka.topics import DELIVERIES, DLQ, DLQ_REPLAYED
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredLetter:
    partition: int
    offset: int
    letter: DeadLetter
    replayed: bool

    @property
    def mark(self) -> str:
        return f"{self.partition}:{self.offset}"


def list_dead_letters(settings: Settings, webhook_id: str | None = None,
                      since_ms: int | None = None,
                      until_ms: int | None = None) -> list[StoredLetter]:
    replayed = {key.decode() for _, _, key, value in read_topic(settings, DLQ_REPLAYED)
                if key is not None and value is not None}
    letters = []
    for partition, offset, key, value in read_topic(settings, DLQ):
        if value is None or (webhook_id is not None and key != webhook_id.encode()):
            continue
        try:
            letter = DeadLetter.decode(value)
        except SchemaError as exc:
            log.warning("unreadable dead letter at %d:%d: %s", partition, offset, exc)
            continue
        if since_ms is not None and letter.dead_at < since_ms:
            continue
        if until_ms is not None and letter.dead_at > until_ms:
            continue
        letters.append(StoredLetter(partition, offset, letter,
                                    f"{partition}:{offset}" in replayed))
    return sorted(letters, key=lambda s: s.letter.dead_at)


def fetch_letters(settings: Settings, where: list[tuple[int, int]]) -> list[StoredLetter]:
    """The dead letters at these (partition, offset)s, read from where they sit rather than
    from the whole topic (a webhook's letters share one partition: its key's). Marked as
    not replayed: the caller has already chosen letters not yet replayed."""
    by_partition: dict[int, set[int]] = {}
    for partition, offset in where:
        by_partition.setdefault(partition, set()).add(offset)
    found = []
    for partition, offsets in sorted(by_partition.items()):
        for _, offset, _key, value in read_partition(settings, DLQ, partition, min(offsets),
                                                     max(offsets) + 1):
            if offset in offsets and value is not None:
                try:
                    found.append(StoredLetter(partition, offset, DeadLetter.decode(value),
                                              False))
                except SchemaError as exc:
                    log.warning("unreadable dead letter at %d:%d: %s", partition, offset, exc)
    return found


def replay(settings: Settings, letters: list[StoredLetter],
           progress: Callable[[int], None] = lambda _: None) -> int:
    """Re-queue the letters not yet replayed; return how many were re-queued."""
    pending = [s for s in letters if not s.replayed]
    publisher = Publisher(settings)
    now = now_ms()
    for stored in pending:
        job = replace(stored.letter.job, attempt=1, outcomes=(), due_at=None, created_at=now)
        publisher.publish_raw(settings.topic(DELIVERIES), job.webhook_id, job.encode())
        progress(1)
    publisher.flush()
    for stored in pending:
        publisher.publish_raw(settings.topic(DLQ_REPLAYED), stored.mark, str(now).encode())
    publisher.flush()
    return len(pending)
