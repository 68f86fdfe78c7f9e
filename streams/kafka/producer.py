"""Publishing to our topics from any Python service: confluent-kafka, idempotent, acks=all."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from ..core import catalog
from ..core.events import Event, validate_event
from ..core.schemas import EVENT, FAMILY_DATA, registry
from ..settings import Settings
from .topics import CONTROL, domain_topic


class ControlCommand(Protocol):
    """A control command (streams.subscriptions.commands.Command), as we publish it: keyed
    by its webhook id, so that one webhook's commands are applied in order."""

    @property
    def webhook_id(self) -> str: ...

    def encode(self) -> bytes: ...


@dataclass(frozen=True)
class Placement:
    """Where the broker wrote a record."""

    topic: str
    partition: int
    offset: int


#: Told the Placement of one record once the broker acknowledged it.
Written = Callable[[Placement], None]


class PublishError(RuntimeError):
    """The broker did not take a message; the message is one line."""


class Publisher:
    def __init__(self, settings: Settings, logger: logging.Logger | None = None,
                 **config: Any) -> None:
        self.settings = settings
        # librdkafka logs to stderr unless given a logger; route it through logging.
        self._producer = Producer({
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # The Java client's partitioner, so keyed records land where JVM producers'
            # would.
            "partitioner": "murmur2_random",
            **config,
        }, logger=logger or logging.getLogger("hookstream.kafka"))
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err.str())

    def _produce(self, topic: str, key: str, value: bytes,
                 written: Written | None = None) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            if err is None and written is not None:
                written(Placement(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0))

        while True:
            try:
                self._producer.produce(topic, value=value, key=key.encode(),
                                       on_delivery=report if written else self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let it drain
        self._producer.poll(0)

    def publish_event(self, record: dict[str, Any], written: Written | None = None) -> Event:
        """Validate an event and publish it as Avro to its family's topic; `written` is told
        where the broker wrote it, once acknowledged (during `flush`)."""
        if record.get("id") is None:
            # Without an id the pipeline would derive one from the offset; an id chosen
            # here lets the caller refer to the event.
            record = {**record, "id": f"evt_{uuid.uuid4().hex}"}
        event = validate_event(record)
        family = catalog.family_of(event.type)
        if family not in self.settings.families:
            raise PublishError(f"no domain topic for family {family!r} in this deployment")
        schema = registry().by_name[FAMILY_DATA[family]]
        known = {f["name"] for f in schema["fields"]}
        # Avro carries the schema's fields only; extra data fields need the JSON format.
        extra = sorted(set(event.data) - known)
        if extra:
            raise PublishError(
                f"field 'data.{extra[0]}' is not in the {family} schema; publish JSON instead"
            )
        value = registry().encode(EVENT, {
            "id": event.id, "event": event.type, "timestamp": event.timestamp,
            "workspace_id": event.workspace_id, "data": (FAMILY_DATA[family], event.data),
        })
        self._produce(self.settings.topic(domain_topic(family)), event.workspace_id, value,
                      written)
        return event

    def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        self._produce(topic, key, value)

    def send_command(self, command: ControlCommand) -> None:
        self._produce(self.settings.topic(CONTROL), command.webhook_id, command.encode())

    def send_commands(self, commands: Iterable[ControlCommand]) -> None:
        for command in commands:
            self.send_command(command)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything is acknowledged; raise if anything was refused."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PublishError(f"{remaining} message(s) not acknowledged within {timeout:g}s; "
                               f"is Kafka up at {self.settings.bootstrap_servers}?")
        if self._errors:
            first, self._errors = self._errors[0], []
            raise PublishError(f"Kafka refused a message: {first}")
