"""`hookstream publish`, `worker`, `dev`: events in, processes up."""

from __future__ import annotations

import functools
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core import strictjson
from .common import CliError, JsonOption, emit, progress, quiet_kafka_logger, settings

if TYPE_CHECKING:
    from ..core.events import Event


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
    as_json: JsonOption = False,
) -> None:
    """Validate and publish domain events (Avro) to their families' topics.

    One event from the arguments, or many from --file, all validated before any is sent.
    With --json: the event's id, topic, partition and offset (one object), or with --file
    {"published": n, "events": [one such object per line, in order]}.
    """
    from ..core.events import InvalidEvent, validate_event
    from ..core.timeutil import iso_from_ms, now_ms
    from ..kafka.producer import Placement, Publisher, PublishError

    if file is not None:
        records = _read_events(file)
    else:
        if event is None or workspace is None:
            raise CliError("give EVENT and --workspace, or --file")
        try:
            payload = strictjson.loads(data)
        except ValueError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
        except RecursionError:
            raise CliError("--data is nested too deep") from None
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
    published: list[Event] = []
    #: Where the broker wrote each event, by its place in `published`.
    placed_at: dict[int, Placement] = {}
    try:
        with progress(as_json, hidden=len(records) < 100) as bar:
            task = bar.add_task("publishing", total=len(records))
            for record in records:
                published.append(publisher.publish_event(
                    record, written=functools.partial(placed_at.__setitem__, len(published))))
                bar.advance(task)
            publisher.flush()
    except (InvalidEvent, PublishError) as exc:
        raise CliError(str(exc)) from None
    if len(placed_at) != len(published):
        raise CliError(f"Kafka did not report where {len(published) - len(placed_at)} event(s) "
                       "were written")
    placed = [{"event_id": ev.id, "event": ev.type, "workspace_id": ev.workspace_id,
               "topic": placed_at[n].topic, "partition": placed_at[n].partition,
               "offset": placed_at[n].offset} for n, ev in enumerate(published)]
    last = published[-1]
    emit(as_json, {"published": len(placed), "events": placed} if file is not None else placed[0],
         f"published {last.type} {last.id} for workspace {last.workspace_id}"
         if len(published) == 1 else f"published {len(published)} events")


def _read_events(file: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--file: {exc.strerror}: {file}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"--file is not UTF-8 text (byte {exc.start})") from None
    records = []
    # Lines end at \n only: JSON text may hold U+2028 and the like, which splitlines() splits at.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = strictjson.loads(line)
        except ValueError as exc:
            raise CliError(f"line {number}: not JSON: {exc}") from None
        except RecursionError:
            raise CliError(f"line {number}: nested too deep") from None
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
    receiver_port: Annotated[int, typer.Option(
        help="Port of the demo receiver.", min=1, max=65535)] = 8787,
    events: Annotated[int, typer.Option(
        help="How many demo events to publish.", min=0, max=1_000_000)] = 5,
) -> None:
    """Local Kafka + worker + a verifying demo receiver + a demo webhook and events."""
    from localdev.demo.run import run_demo

    settings()  # a bad setting is one line now, not after Kafka and a worker started
    run_demo(receiver_port=receiver_port, events=events)


