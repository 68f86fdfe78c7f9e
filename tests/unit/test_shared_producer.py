"""SharedProducer: the worker's one producer, made and started by the first of its users to
start, stopped by the last to stop, and refusing sends from a user that is not started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from aiokafka.errors import KafkaError

from streams.pipeline.clients import SharedProducer
from streams.settings import Settings

SETTINGS = Settings.from_env({})


class Recording:
    def __init__(self, made: list[Recording]) -> None:
        made.append(self)
        self.started = self.stopped = 0
        self.sent: list[tuple[str, bytes | None]] = []

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None,
                            partition: int | None = None) -> object:
        return await self.send(topic, value, key, headers, partition)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Awaitable[object]:
        self.sent.append((topic, value))
        return asyncio.sleep(0)


def test_one_producer_lives_from_the_first_start_to_the_last_stop() -> None:
    made: list[Recording] = []
    shared = SharedProducer(lambda _s: Recording(made), SETTINGS)

    async def main() -> None:
        a, b, c = (shared.handle(SETTINGS) for _ in range(3))
        assert made == []  # nothing is made before a user starts
        await asyncio.gather(a.start(), b.start())
        await a.send_and_wait("t", b"1")
        await b.send_and_wait("t", b"2")
        assert len(made) == 1 and made[0].started == 1
        await a.stop()
        await a.stop()  # twice: counted once
        assert made[0].stopped == 0, "stopped while b still uses it"
        with pytest.raises(KafkaError):
            await a.send_and_wait("t", b"after stop")
        with pytest.raises(KafkaError):
            await c.send_and_wait("t", b"never started")
        await b.stop()
        assert made[0].stopped == 1
        await c.start()  # a user after all stopped gets a new one
        assert len(made) == 2 and made[1].started == 1
        await c.stop()

    asyncio.run(main())
    assert made[0].sent == [("t", b"1"), ("t", b"2")]
