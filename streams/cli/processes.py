"""`hookstream publish`, `worker`, `dev`: events in, processes up."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from .common import CliError, out, quiet_kafka_logger, settings


def register(cli: typer.Typer) -> None:
    cli.command("publish")(publish)
    cli.command("worker")(worker)
    cli.command("dev")(dev)


# -- publish -------------------------------------------------------------------------
def publish(
    event: Annotated[str, typer.Argument(help="Event type, e.g. task.created.")],
    workspace: Annotated[str, typer.Option(help="Workspace id (the message key).")],
    data: Annotated[str, typer.Option(help="The event's data as a JSON object.")] = "{}",
    event_id: Annotated[str | None, typer.Option("--id", help="Event id (default: new).")]
    = None,
    timestamp: Annotated[str | None, typer.Option(help="ISO 8601 time (default: now).")]
    = None,
) -> None:
    """Validate and publish one domain event (Avro) to its family's topic."""
    from ..events import InvalidEvent, validate_event
    from ..producer import Publisher, PublishError
    from ..timeutil import iso_from_ms, now_ms

    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise CliError(f"--data is not JSON: {exc}") from None
    record = {"id": event_id or f"evt_{uuid.uuid4().hex}", "event": event,
              "workspace_id": workspace, "timestamp": timestamp or iso_from_ms(now_ms()),
              "data": payload}
    try:
        validate_event(record)  # refuse bad input before touching Kafka
    except InvalidEvent as exc:
        raise CliError(str(exc)) from None
    publisher = Publisher(settings(), logger=quiet_kafka_logger())
    try:
        published = publisher.publish_event(record)
        publisher.flush()
    except (InvalidEvent, PublishError) as exc:
        raise CliError(str(exc)) from None
    out.print(f"published {published.type} {published.id} for workspace {workspace}")


# -- processes -----------------------------------------------------------------------
def worker() -> None:
    """Run a worker: fan-out, control, delivery and the web server (settings from env)."""
    settings()
    from ..admin import AdminError
    from ..worker import run_worker

    try:
        run_worker()
    except AdminError as exc:
        raise CliError(str(exc)) from None


def dev(
    receiver_port: Annotated[int, typer.Option(help="Port of the demo receiver.")] = 8787,
    events: Annotated[int, typer.Option(help="How many demo events to publish.")] = 5,
) -> None:
    """Local Kafka + worker + a verifying demo receiver + a demo webhook and events."""
    from ..demo.run import run_demo

    run_demo(receiver_port=receiver_port, events=events)


