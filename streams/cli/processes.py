"""`hookstream publish`, `worker`, `dev`: events in, processes up."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import CliError, out, quiet_kafka_logger, settings


def register(cli: typer.Typer) -> None:
    cli.command("publish")(publish)
    cli.command("worker")(worker)
    cli.command("dev")(dev)


# -- publish -------------------------------------------------------------------------
def publish(
    event: Annotated[str | None, typer.Argument(help="Event type, e.g. task.created.")] = None,
    workspace: Annotated[str | None, typer.Option(help="Workspace id (the message key).")]
    = None,
    data: Annotated[str, typer.Option(help="The event's data as a JSON object.")] = "{}",
    event_id: Annotated[str | None, typer.Option("--id", help="Event id (default: new).")]
    = None,
    timestamp: Annotated[str | None, typer.Option(help="ISO 8601 time (default: now).")]
    = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Publish many: one JSON event object a line ('-' for stdin).")] = None,
) -> None:
    """Validate and publish domain events (Avro) to their families' topics.

    One event from the arguments, or many from --file, all validated before any is sent.
    """
    from rich.progress import Progress

    from ..core.events import InvalidEvent, validate_event
    from ..core.timeutil import iso_from_ms, now_ms
    from ..kafka.producer import Publisher, PublishError

    if file is not None:
        records = _read_events(file)
    else:
        if event is None or workspace is None:
            raise CliError("give EVENT and --workspace, or --file")
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
        records = [{"id": event_id, "event": event, "workspace_id": workspace,
                    "timestamp": timestamp or iso_from_ms(now_ms()), "data": payload}]
    for number, record in enumerate(records, 1):
        record["id"] = record.get("id") or f"evt_{uuid.uuid4().hex}"
        try:
            validate_event(record)  # refuse bad input before touching Kafka
        except InvalidEvent as exc:
            where = f"line {number}: " if file is not None else ""
            raise CliError(f"{where}{exc}") from None
    publisher = Publisher(settings(), logger=quiet_kafka_logger())
    try:
        with Progress(console=out, transient=True, disable=len(records) < 100) as progress:
            task = progress.add_task("publishing", total=len(records))
            for record in records:
                published = publisher.publish_event(record)
                progress.advance(task)
            publisher.flush()
    except (InvalidEvent, PublishError) as exc:
        raise CliError(str(exc)) from None
    if len(records) == 1:
        out.print(f"published {published.type} {published.id} for workspace "
                  f"{published.workspace_id}")
    else:
        out.print(f"published {len(records)} events")


def _read_events(file: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        raise CliError(f"--file: {exc.strerror}: {file}") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CliError(f"line {number}: not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise CliError(f"line {number}: must be a JSON object")
        records.append(record)
    if not records:
        raise CliError("--file holds no events")
    return records


# -- processes -----------------------------------------------------------------------
def worker() -> None:
    """Run a worker: fan-out, control, delivery and the web server (settings from env)."""
    from ..kafka.admin import AdminError
    from ..worker.main import run_worker

    try:
        run_worker(settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None


def dev(
    receiver_port: Annotated[int, typer.Option(help="Port of the demo receiver.")] = 8787,
    events: Annotated[int, typer.Option(help="How many demo events to publish.")] = 5,
) -> None:
    """Local Kafka + worker + a verifying demo receiver + a demo webhook and events."""
    from localdev.demo.run import run_demo

    run_demo(receiver_port=receiver_port, events=events)


